//! `chunkwise upload`: upload one file and print its media id.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use chunkwise::auth::{
    ENV_ACCESS_TOKEN, ENV_ACCESS_TOKEN_SECRET, ENV_API_KEY, ENV_API_SECRET, ENV_BEARER_TOKEN,
};
use chunkwise::checkpoint::CheckpointStore as _;
use chunkwise::checkpoint::{CheckpointKey, SourceIdentity};
use chunkwise::engine::{OneShotMode, SubtitleTrack};
use chunkwise::protocol::{
    AppendRequest, AppendResponse, InitRequest, InitResponse, LanguageCode, MediaId, MediaStatus,
    OneShotRequest, ProtocolTarget, SubtitlesRequest, UploadProtocol, XClient,
};
use chunkwise::{
    Credentials, Engine, ErrorKind, FileCheckpointStore, MediaCategory, MediaSpec, Source,
    UploadReport,
};
use clap::Args;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::signals::Interrupts;
use super::{CheckpointArgs, GlobalArgs, bench, output, parse_size, progress, resume};

#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The file to upload.
    file: PathBuf,
    #[command(flatten)]
    client: super::media::ClientArgs,
    /// MIME type; guessed from the file extension when omitted.
    #[arg(long)]
    media_type: Option<String>,
    /// Media category (tweet_image, tweet_gif, tweet_video, amplify_video, dm_image, dm_gif,
    /// dm_video, subtitles); guessed from the media type when omitted.
    #[arg(long)]
    category: Option<MediaCategory>,
    #[command(flatten)]
    pins: super::PinArgs,
    /// Use a named strategy preset of `chunkwise bench` (see `chunkwise bench --list`)
    /// instead of the settings' scheduler and retry policy (the retry seed is kept).
    #[arg(long, conflicts_with_all = ["chunk_size", "parallel"])]
    strategy: Option<String>,
    /// Record every APPEND attempt in the report (its `trace`).
    #[arg(long)]
    trace_requests: bool,
    /// Send segments base64-encoded (`api.media_data`) instead of raw `media`.
    #[arg(long)]
    media_data: bool,
    /// Per-APPEND body limit on the wire (`api.max_append_bytes`; default 5MiB).
    #[arg(long, value_parser = parse_size)]
    max_append_bytes: Option<u64>,
    /// Write the final report as JSON to this path.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Send the upload through an emulated link: a built-in profile name (lte, 3g,
    /// constant-10mbit-40ms, constant-1mbit-150ms, step-20-2-20, outage-20s, lossy, handover)
    /// or a Mahimahi trace file. Needs an `http://` base URL (the emulator's).
    #[arg(long)]
    link: Option<String>,
    /// With --link: override the link's round-trip time, in milliseconds.
    #[arg(long, requires = "link")]
    rtt_ms: Option<u64>,
    /// Start a new upload even if an interrupted upload of this file to this target was
    /// saved: its checkpoint is removed first. Without it, such an upload is resumed.
    #[arg(long)]
    no_resume: bool,
    /// If another process is uploading this file to this target, wait for it to end (then
    /// carry on its checkpoint) instead of failing at once.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// One-shot upload (`api.one_shot`): auto (small images the API takes in one request),
    /// never, or always.
    #[arg(long, value_parser = parse_one_shot)]
    one_shot: Option<OneShotMode>,
    /// Alt text to set on the image or GIF once uploaded (at most 1000 characters).
    #[arg(long, value_name = "TEXT")]
    alt_text: Option<String>,
    /// A subtitle track to attach to the video once processed, as LANG:NAME:FILE such as
    /// `EN:English:subs.srt` (SRT or WebVTT; repeatable, one per language).
    #[arg(long = "subtitles", value_name = "LANG:NAME:FILE", value_parser = parse_subtitles)]
    subtitles: Vec<SubtitleTrack>,
    /// User ids allowed to attach the media (INIT's `additional_owners`; comma-separated or
    /// repeated, at most 100).
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    additional_owners: Vec<String>,
    /// Mark the media as shared, for DMs reused across messages (INIT's `shared`).
    #[arg(long)]
    shared: bool,
}

/// Parses `--one-shot`.
fn parse_one_shot(s: &str) -> Result<OneShotMode, String> {
    s.parse().map_err(|e: chunkwise::Error| e.to_string())
}

/// Parses `--subtitles LANG:NAME:FILE` (the file may contain colons; the name may not).
fn parse_subtitles(s: &str) -> Result<SubtitleTrack, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(lang), Some(name), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "expected LANG:NAME:FILE, such as EN:English:subs.srt, got {s:?}"
        ));
    };
    let lang: LanguageCode = lang.parse().map_err(|e: chunkwise::Error| e.to_string())?;
    chunkwise::protocol::check_display_name(name).map_err(|e| e.to_string())?;
    if file.is_empty() {
        return Err(format!(
            "no subtitle file in {s:?}; expected LANG:NAME:FILE"
        ));
    }
    let path = PathBuf::from(file);
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(SubtitleTrack::file(lang, name, path))
}

/// Guesses a MIME type from a file extension.
fn guess_media_type(path: &std::path::Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "ts" => "video/mp2t",
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "srt" => "text/srt",
        "vtt" => "text/vtt",
        _ => return None,
    })
}

/// The OAuth 1.0a variables, all four needed.
const OAUTH1_VARS: [&str; 4] = [
    ENV_API_KEY,
    ENV_API_SECRET,
    ENV_ACCESS_TOKEN,
    ENV_ACCESS_TOKEN_SECRET,
];

/// The credentials of the `X_*` environment variables, if any are set ([`Credentials::from_env`]),
/// after checking what it does not: that the OAuth 1.0a set is complete when any of it is
/// set, and that no value has a control character (a line break cannot go into an HTTP
/// header; a trailing `\r` from a file with Windows line endings is the usual cause). Errors
/// name the variables, never their values.
pub(crate) fn env_credentials() -> anyhow::Result<Option<Credentials>> {
    let is_set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let (set, missing): (Vec<&str>, Vec<&str>) = OAUTH1_VARS.iter().partition(|v| is_set(v));
    if !set.is_empty() && !missing.is_empty() {
        anyhow::bail!(
            "incomplete OAuth 1.0a credentials: {} {} set but {} {}; set all four (or unset \
             them all and use {ENV_BEARER_TOKEN})",
            set.join(", "),
            if set.len() == 1 { "is" } else { "are" },
            missing.join(", "),
            if missing.len() == 1 {
                "is not"
            } else {
                "are not"
            },
        );
    }
    for var in OAUTH1_VARS.iter().chain([&ENV_BEARER_TOKEN]) {
        match std::env::var(var) {
            Ok(v) if v.chars().any(char::is_control) => anyhow::bail!(
                "{var} contains a line break or another control character, which cannot be \
                 sent in an HTTP header (a trailing \\r from a file with Windows line endings \
                 is the usual cause); remove it (the value is not shown)"
            ),
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{var} is not valid UTF-8 text (the value is not shown)")
            }
            _ => {}
        }
    }
    Ok(Credentials::from_env())
}

/// Credentials from the environment ([`env_credentials`]); for a loopback base URL, the
/// emulator's documented demo credentials when no `X_*` variable is set.
pub(crate) fn credentials_for(base_url: Option<&url::Url>) -> anyhow::Result<Credentials> {
    if let Some(c) = env_credentials()? {
        return Ok(c);
    }
    let loopback = base_url.and_then(|u| u.host()).is_some_and(|h| match h {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    });
    if loopback {
        return Ok(chunkwise::emulator::demo_credentials());
    }
    anyhow::bail!(
        "no credentials: set X_API_KEY, X_API_SECRET, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET (OAuth 1.0a) or X_BEARER_TOKEN"
    )
}

pub(crate) async fn run(args: UploadArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen()?;
    let media_type = match &args.media_type {
        Some(t) => t.clone(),
        None => guess_media_type(&args.file)
            .map(str::to_string)
            .with_context(|| {
                format!(
                    "cannot guess the media type of {}; pass --media-type",
                    args.file.display()
                )
            })?,
    };
    let category = args
        .category
        .or_else(|| MediaCategory::guess_from_media_type(&media_type));
    let source = Source::file(&args.file).await?;

    let settings = super::resolve(settings_builder(&args)).await?;
    let credentials = credentials_for(settings.api().base_url.as_ref())?;
    check_report_path(args.report.as_deref()).await?;
    let client = settings.client_builder(credentials)?;
    // The checkpoint names the real target, also when the requests go through a link proxy
    // on a new port each run: so the next run finds it.
    let direct = client.clone().build()?;
    let target = direct.describe();
    let mut proxy = None;
    let protocol: Arc<dyn UploadProtocol> = match &args.link {
        None => Arc::new(direct),
        Some(spec) => {
            // With --link, the client talks to a local link proxy that forwards to the base URL.
            let upstream = settings
                .api()
                .base_url
                .as_ref()
                .filter(|u| u.scheme() == "http")
                .and_then(|u| u.socket_addrs(|| None).ok())
                .and_then(|addrs| addrs.into_iter().next())
                .context("--link needs an http:// base URL to forward to (--base-url or api.base_url), such as the one `chunkwise serve` prints")?;
            let link = super::demo::start_link(
                upstream,
                super::demo::link_profile(spec, args.rtt_ms).await?,
            )
            .await?;
            let via = client
                .base_url(url::Url::parse(&format!("http://{}", link.addr()))?)
                .build()?;
            proxy = Some(link);
            Arc::new(Retargeted {
                inner: via,
                target: target.clone(),
            })
        }
    };
    let store = settings.checkpoint_store();
    let mut config = settings.resumable_engine_config()?;
    if let Some(name) = &args.strategy {
        let preset = bench::strategy_config(name)?;
        config.strategy = preset.strategy;
        config.retry = chunkwise::RetryPolicy {
            seed: config.retry.seed,
            ..preset.retry
        };
    }
    config.trace_requests = args.trace_requests;
    let engine = Engine::new(protocol, config)?;
    let identity = SourceIdentity::of(&source).await?;
    let key = CheckpointKey::for_upload(&identity, &target);
    // One owner per upload: the checkpoint is read (or discarded) under the claim, which the
    // engine then holds until the upload ends.
    let claim = claim_upload(&store, &key, args.wait, &mut interrupts).await?;
    let saved = resume::saved_for(&store, &key, &identity, &target, args.no_resume).await?;
    let started = SystemTime::now();
    let handle = match saved {
        Some(mut checkpoint) => {
            // Alt text and subtitles come after the upload, so this run's flags apply to a
            // resumed upload too (INIT's fields were sent by the run that saved it).
            if let Some(text) = &args.alt_text {
                checkpoint.spec.alt_text = Some(text.clone());
            }
            if !args.subtitles.is_empty() {
                checkpoint.spec.subtitles = args.subtitles.clone();
            }
            checkpoint.spec.validate()?;
            checkpoint.source.check_unchanged(&identity).map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "{} changed since its upload was interrupted (checkpoint {}); run again \
                     with --no-resume to discard the checkpoint and start over",
                    args.file.display(),
                    store.path_for(&key).display()
                ))
            })?;
            resume::announce(&checkpoint, global);
            let spec = checkpoint.spec.clone();
            engine.upload_claimed(claim, Some(checkpoint), source, spec)
        }
        None => {
            let mut spec =
                MediaSpec::new(media_type).with_additional_owners(args.additional_owners.clone());
            if let Some(c) = category {
                spec = spec.with_category(c);
            }
            if args.shared {
                spec = spec.with_shared(true);
            }
            if let Some(text) = &args.alt_text {
                spec = spec.with_alt_text(text.clone());
            }
            for track in &args.subtitles {
                spec = spec.with_subtitles(track.clone());
            }
            // Checked here too, so a bad spec fails before the checkpoint lookup's I/O.
            spec.validate()?;
            engine.upload_claimed(claim, None, source, spec)
        }
    };
    let result = progress::follow(handle, global, Duration::from_secs(1), &mut interrupts).await;
    if let Some(link) = proxy {
        link.shutdown().await;
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let hint = "run again with --no-resume to discard it and start over";
            return Err(keeps_failing(e, &store, &key, hint).await);
        }
    };
    deliver(report, args.report.as_deref(), Some(started)).await
}

/// How often `upload --wait` tries again to claim an upload another process drives.
///
/// Source: reasonable default; the claim is free the moment the other process ends, and half
/// a second is short next to any upload worth waiting for while costing nothing to poll.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// Claims the upload under `key`; if another process holds it, fails naming that process,
/// or with `wait` tries again every [`WAIT_POLL`] until it is free (or an interrupt).
async fn claim_upload(
    store: &chunkwise::checkpoint::FileCheckpointStore,
    key: &CheckpointKey,
    wait: bool,
    interrupts: &mut Interrupts,
) -> anyhow::Result<chunkwise::checkpoint::CheckpointClaim> {
    use chunkwise::checkpoint::CheckpointStore as _;
    let mut announced = false;
    loop {
        match store.claim(key).await {
            Ok(claim) => return Ok(claim),
            Err(e) if e.kind() == chunkwise::ErrorKind::Claimed && wait => {
                if !announced {
                    note!("{}; waiting for it (--wait)", output::clean(&e.to_string()));
                    announced = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(WAIT_POLL) => {}
                    signal = interrupts.next() => {
                        return Err(super::signals::Interrupted {
                            signal,
                            what: "stopped waiting for the other upload; nothing was sent"
                                .to_string(),
                        }
                        .into());
                    }
                }
            }
            Err(e) if e.kind() == chunkwise::ErrorKind::Claimed => {
                return Err(anyhow::Error::new(e).context(
                    "another chunkwise is uploading this file to this target; run with --wait \
                     to carry on its upload once it ends",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `e`, the error of an upload, with a hint when the server refused it for good (a rejected
/// request, an unusable answer, failed processing) and its checkpoint is still there: every
/// later run would resume it and, likely, fail the same way. `hint` says how to start over
/// instead.
pub(crate) async fn keeps_failing(
    e: anyhow::Error,
    store: &FileCheckpointStore,
    key: &CheckpointKey,
    hint: &str,
) -> anyhow::Error {
    let refused = e.downcast_ref::<chunkwise::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            ErrorKind::Rejected | ErrorKind::Protocol | ErrorKind::ProcessingFailed
        )
    });
    if refused && matches!(store.load(key).await, Ok(Some(_))) {
        e.context(format!(
            "the upload failed and its checkpoint {} is kept, so the next run resumes it; if \
             the error repeats, {hint}",
            store.path_for(key).display()
        ))
    } else {
        e
    }
}

/// Checks, before the first request, that the report can be written at `path` (its
/// directory exists, the file can be opened for writing), so that a typo does not cost a
/// whole upload. A file that did not exist is removed again. A device or pipe (such as
/// `/dev/stdout`) is not opened, since opening a FIFO blocks until a reader comes; what
/// only fails when written (`/dev/full`) fails after the media id is on stdout.
pub(crate) async fn check_report_path(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let probe = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        match std::fs::metadata(&probe) {
            Ok(m) if m.is_dir() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "it is a directory",
                ));
            }
            Ok(m) if !m.is_file() => return Ok(()),
            _ => {}
        }
        let existed = std::fs::symlink_metadata(&probe).is_ok();
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&probe)?;
        if !existed {
            std::fs::remove_file(&probe)?;
        }
        Ok(())
    })
    .await?
    .with_context(|| {
        format!(
            "cannot write the report to {}; nothing was uploaded",
            path.display()
        )
    })
}

/// Hands the result over: the media id on stdout first, then the report to `path`. The
/// media id is never lost: if stdout cannot take it, or the report cannot be written, the
/// error names it.
pub(crate) async fn deliver(
    report: UploadReport,
    path: Option<&std::path::Path>,
    started: Option<SystemTime>,
) -> anyhow::Result<()> {
    let id = report.media_id.clone();
    let printed = output::line(id.as_str());
    let written = write_cli_report(path, report, started).await;
    match (printed, written) {
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(e)) => Err(e.context(format!(
            "media {id} was uploaded (its id is on stdout) but the report was not written"
        ))),
        (Err(e), written) => {
            let report = match written {
                Err(w) => format!(
                    "; the report was not written either ({})",
                    super::one_line(&w)
                ),
                Ok(()) if path.is_some() => "; the report was written".to_string(),
                Ok(()) => String::new(),
            };
            Err(e.context(format!(
                "media {id} was uploaded but its id could not be printed{report}"
            )))
        }
    }
}

/// A protocol that reports another target than its own base URL: the upstream behind a
/// link proxy, whose port changes every run.
#[derive(Debug)]
struct Retargeted {
    inner: XClient,
    target: ProtocolTarget,
}

impl UploadProtocol for Retargeted {
    fn describe(&self) -> ProtocolTarget {
        self.target.clone()
    }

    fn max_append_payload(&self) -> u64 {
        self.inner.max_append_payload()
    }

    fn init<'a>(&'a self, req: &'a InitRequest) -> BoxFuture<'a, chunkwise::Result<InitResponse>> {
        self.inner.init(req)
    }

    fn append(&self, req: AppendRequest) -> BoxFuture<'_, chunkwise::Result<AppendResponse>> {
        self.inner.append(req)
    }

    fn finalize<'a>(&'a self, id: &'a MediaId) -> BoxFuture<'a, chunkwise::Result<MediaStatus>> {
        self.inner.finalize(id)
    }

    fn status<'a>(&'a self, id: &'a MediaId) -> BoxFuture<'a, chunkwise::Result<MediaStatus>> {
        self.inner.status(id)
    }

    fn accepts_one_shot(&self, req: &InitRequest) -> bool {
        self.inner.accepts_one_shot(req)
    }

    fn upload_one_shot(
        &self,
        req: OneShotRequest,
    ) -> BoxFuture<'_, chunkwise::Result<MediaStatus>> {
        self.inner.upload_one_shot(req)
    }

    fn set_alt_text<'a>(
        &'a self,
        id: &'a MediaId,
        text: &'a str,
    ) -> BoxFuture<'a, chunkwise::Result<()>> {
        self.inner.set_alt_text(id, text)
    }

    fn attach_subtitles<'a>(
        &'a self,
        req: &'a SubtitlesRequest,
    ) -> BoxFuture<'a, chunkwise::Result<()>> {
        self.inner.attach_subtitles(req)
    }

    fn delete_subtitles<'a>(
        &'a self,
        video: &'a MediaId,
        category: Option<MediaCategory>,
        language: &'a LanguageCode,
    ) -> BoxFuture<'a, chunkwise::Result<()>> {
        self.inner.delete_subtitles(video, category, language)
    }
}

/// The settings layers plus this command's flags, which win over every layer.
fn settings_builder(args: &UploadArgs) -> chunkwise::settings::SettingsBuilder {
    let mut b = args
        .checkpoints
        .apply(args.pins.apply(args.client.builder()));
    if args.media_data {
        b = b.origin("command line --media-data").media_data(true);
    }
    if let Some(max) = args.max_append_bytes {
        b = b
            .origin("command line --max-append-bytes")
            .max_append_bytes(max);
    }
    if let Some(mode) = args.one_shot {
        b = b.origin("command line --one-shot").one_shot(mode);
    }
    b
}

/// The report file `--report` writes: the engine's [`UploadReport`] plus what only the
/// process knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CliReport {
    /// The engine's report, its fields at the top level.
    #[serde(flatten)]
    pub(crate) report: UploadReport,
    /// Peak resident set size of this process (`VmHWM`), in bytes; `None` where
    /// `/proc/self/status` does not exist.
    pub(crate) peak_rss_bytes: Option<u64>,
    /// When the upload was started, in milliseconds since the Unix epoch.
    pub(crate) started_unix_ms: Option<f64>,
}

/// Writes the report as pretty JSON when a path was given.
pub(crate) async fn write_report(
    path: Option<&std::path::Path>,
    report: &UploadReport,
) -> anyhow::Result<()> {
    write_cli_report(path, report.clone(), None).await
}

/// Writes a [`CliReport`] (the peak RSS read now) as pretty JSON when a path was given.
async fn write_cli_report(
    path: Option<&std::path::Path>,
    report: UploadReport,
    started: Option<SystemTime>,
) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let report = CliReport {
        report,
        peak_rss_bytes: peak_rss_bytes().await,
        started_unix_ms: started.and_then(unix_ms),
    };
    let json = serde_json::to_vec_pretty(&report)?;
    tokio::fs::write(path, json)
        .await
        .with_context(|| format!("writing the report to {}", path.display()))?;
    Ok(())
}

/// Milliseconds since the Unix epoch (`None` before it).
pub(crate) fn unix_ms(t: SystemTime) -> Option<f64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64() * 1e3)
}

/// This process's peak resident set size in bytes, from `VmHWM` in `/proc/self/status`
/// (Linux); `None` elsewhere.
pub(crate) async fn peak_rss_bytes() -> Option<u64> {
    let status = tokio::fs::read_to_string("/proc/self/status").await.ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM:  1234 kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_guessed_from_extensions() {
        assert_eq!(
            guess_media_type(std::path::Path::new("a/b.MP4")),
            Some("video/mp4")
        );
        assert_eq!(
            guess_media_type(std::path::Path::new("x.gif")),
            Some("image/gif")
        );
        assert_eq!(guess_media_type(std::path::Path::new("noext")), None);
    }

    #[test]
    fn peak_rss_is_read_from_vm_hwm() {
        let status = "Name:\tchunkwise\nVmPeak:\t  200 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12345 * 1024));
        assert_eq!(parse_vm_hwm("VmHWM: 12 MB\n"), None);
        assert_eq!(parse_vm_hwm("VmRSS: 12 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM: x kB\n"), None);
    }

    #[tokio::test]
    async fn peak_rss_of_this_process_is_known_on_linux() {
        let rss = peak_rss_bytes().await;
        if cfg!(target_os = "linux") {
            assert!(rss.is_some_and(|b| b > 0), "{rss:?}");
        }
    }
}
