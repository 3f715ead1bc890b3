//! `chunkwise resume` and `chunkwise status`: continue and list the uploads whose checkpoints
//! are saved in the checkpoint directory, and the lookup `chunkwise upload` does to resume
//! automatically.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use chunkwise::checkpoint::{CheckpointKey, CheckpointStore, SourceIdentity};
use chunkwise::protocol::{ApiVersion, ProtocolTarget};
use chunkwise::{Checkpoint, Engine, FileCheckpointStore, Source, UploadReport};
use clap::Args;

use super::progress::{self, size};
use super::signals::{Interrupted, Interrupts};
use super::upload::{check_report_path, credentials_for, deliver, keeps_failing};
use super::{CheckpointArgs, GlobalArgs, PinArgs, SettingsArgs, output};

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// One JSON object per saved upload and line, instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// Keys of the saved uploads to continue, as `chunkwise status` lists them.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    keys: Vec<String>,
    /// Continue every saved upload, one after the other.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    #[command(flatten)]
    pins: PinArgs,
    /// Write the final report of the (last) resumed upload as JSON to this path.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The checkpoint `chunkwise upload` continues, if any, for the file of `identity` uploaded
/// to `target` under `key`. With `discard` (`--no-resume`), removes it (and any stale one of
/// the same file and target) instead and returns `None`.
///
/// # Errors
///
/// A checkpoint that cannot be read, and a checkpoint of the same file and target saved
/// when the file had another size: both need `--no-resume`.
pub(crate) async fn saved_for(
    store: &FileCheckpointStore,
    key: &CheckpointKey,
    identity: &SourceIdentity,
    target: &ProtocolTarget,
    discard: bool,
) -> anyhow::Result<Option<Checkpoint>> {
    if discard {
        let mut stale = same_file_elsewhere(store, key, identity, target).await;
        stale.push(key.clone());
        for k in stale {
            store
                .remove(&k)
                .await
                .with_context(|| format!("cannot discard the checkpoint {k}"))?;
        }
        return Ok(None);
    }
    match store.load(key).await {
        Ok(Some(cp)) => return Ok(Some(cp)),
        Ok(None) => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot resume the interrupted upload of this file: its checkpoint {} is \
                 unreadable; run again with --no-resume to discard it and start over",
                store.path_for(key).display()
            )));
        }
    }
    // The key holds the size: a checkpoint of this path and target under another key was
    // made when the file had another size.
    if let Some(other) = same_file_elsewhere(store, key, identity, target)
        .await
        .into_iter()
        .next()
    {
        anyhow::bail!(
            "the file changed since its upload was interrupted: it had {} bytes then and has \
             {} now (checkpoint {}); run again with --no-resume to discard the checkpoint and \
             start over",
            load_size(store, &other).await.unwrap_or_default(),
            identity.size,
            store.path_for(&other).display()
        );
    }
    Ok(None)
}

/// Keys other than `key` of readable checkpoints of the same file path and target.
async fn same_file_elsewhere(
    store: &FileCheckpointStore,
    key: &CheckpointKey,
    identity: &SourceIdentity,
    target: &ProtocolTarget,
) -> Vec<CheckpointKey> {
    let Some(path) = &identity.path else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for other in store.list().await.unwrap_or_default() {
        if &other == key {
            continue;
        }
        // Unreadable checkpoints of other uploads are `status`'s business, not this one's.
        if let Ok(Some(cp)) = store.load(&other).await {
            if cp.source.path.as_ref() == Some(path) && cp.target == *target {
                found.push(other);
            }
        }
    }
    found
}

async fn load_size(store: &FileCheckpointStore, key: &CheckpointKey) -> Option<u64> {
    store
        .load(key)
        .await
        .ok()
        .flatten()
        .map(|cp| cp.source.size)
}

/// Says on stderr what a resumed upload starts from (unless `--quiet`).
pub(crate) fn announce(cp: &Checkpoint, global: &GlobalArgs) {
    if !global.quiet {
        note!(
            "resuming media {}: {} of {} planned segments ({} of {}) already acknowledged",
            cp.media_id,
            cp.acked.len(),
            cp.plan.segments().len(),
            size(cp.acked_bytes()),
            size(cp.source.size)
        );
    }
}

/// `chunkwise status`.
pub(crate) async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let settings = super::resolve(args.checkpoints.apply(args.settings.builder())).await?;
    let store = settings.checkpoint_store();
    let keys = store.list().await?;
    let now = SystemTime::now();
    let mut unreadable = 0;
    let mut shown = 0;
    for key in keys {
        match store.load(&key).await {
            Ok(Some(cp)) => {
                shown += 1;
                if args.json {
                    output::line(&status_json(&key, &cp, now).to_string())?;
                } else {
                    output::stdout(&status_text(&key, &cp, now))?;
                }
            }
            // Removed since it was listed (an upload finished meanwhile).
            Ok(None) => {}
            Err(e) => {
                unreadable += 1;
                note!("error: {key}: {}", super::one_line(&anyhow::Error::new(e)));
            }
        }
    }
    if unreadable > 0 {
        anyhow::bail!(
            "{unreadable} checkpoint file(s) in {} could not be read; delete them, or run \
             `chunkwise upload --no-resume FILE` for their file",
            store.dir().display()
        );
    }
    if shown == 0 && !args.json {
        note!("no saved uploads in {}", store.dir().display());
    }
    Ok(())
}

/// How long until `t`, or how long ago, in words.
fn expiry_text(expires_at: Option<SystemTime>, now: SystemTime) -> String {
    let Some(t) = expires_at else {
        return "unknown".to_string();
    };
    let at = humantime::format_rfc3339_seconds(t);
    // Whole seconds: the sub-second part is noise here.
    let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
    match t.duration_since(now) {
        Ok(left) => format!("{at} (in {})", secs(left)),
        Err(e) => format!("{at} (expired {} ago)", secs(e.duration())),
    }
}

fn status_text(key: &CheckpointKey, cp: &Checkpoint, now: SystemTime) -> String {
    let file = cp
        .source
        .path
        .as_deref()
        .map_or_else(|| "(not a file)".to_string(), output::clean);
    // The media key is the server's text, kept as it was sent.
    let media_key = cp
        .media_key
        .as_deref()
        .map(|k| format!(" (media key {})", output::shown(k)))
        .unwrap_or_default();
    format!(
        "{key}\n  file:     {file} ({} bytes)\n  target:   {} {}\n  media id: {}{media_key}\n  \
         segments: {} of {} planned acknowledged ({} projected)\n  bytes:    {} of {} \
         acknowledged\n  expires:  {}\n",
        cp.source.size,
        cp.target.api,
        cp.target.base_url,
        cp.media_id,
        cp.acked.len(),
        cp.plan.segments().len(),
        cp.plan.projected_segments(),
        cp.acked_bytes(),
        cp.source.size,
        expiry_text(cp.expires_at, now),
    )
}

fn status_json(key: &CheckpointKey, cp: &Checkpoint, now: SystemTime) -> serde_json::Value {
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .ok()
    };
    serde_json::json!({
        "key": key.as_str(),
        "file": cp.source.path,
        "target_api": cp.target.api,
        "base_url": cp.target.base_url,
        "media_id": cp.media_id.as_str(),
        "acked_segments": cp.acked.len(),
        "planned_segments": cp.plan.segments().len(),
        "projected_segments": cp.plan.projected_segments(),
        "acked_bytes": cp.acked_bytes(),
        "total_bytes": cp.source.size,
        "expires_at": cp.expires_at.and_then(epoch),
        "expired": cp.is_expired(now),
    })
}

/// `chunkwise resume`.
pub(crate) async fn run_resume(args: ResumeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen()?;
    check_report_path(args.report.as_deref()).await?;
    let base = args
        .checkpoints
        .apply(args.pins.apply(args.settings.builder()));
    let store = super::resolve(base).await?.checkpoint_store();
    let keys = if args.all {
        store.list().await?
    } else {
        args.keys
            .iter()
            .map(|k| CheckpointKey::parse(k))
            .collect::<chunkwise::Result<Vec<_>>>()?
    };
    if keys.is_empty() {
        note!("no saved uploads in {}", store.dir().display());
        return Ok(());
    }
    let mut failed = 0;
    for key in &keys {
        match resume_one(&args, global, &store, key, &mut interrupts).await {
            Ok(report) => deliver(report, args.report.as_deref(), None).await?,
            // Stop here: the interrupt was meant for the whole command.
            Err(e) if keys.len() == 1 || e.is::<Interrupted>() => return Err(e),
            Err(e) => {
                failed += 1;
                note!("error: {key}: {}", super::one_line(&e));
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} saved uploads failed", keys.len());
    }
    Ok(())
}

/// Continues the saved upload `key` to its end; returns its report.
async fn resume_one(
    args: &ResumeArgs,
    global: &GlobalArgs,
    store: &FileCheckpointStore,
    key: &CheckpointKey,
    interrupts: &mut Interrupts,
) -> anyhow::Result<UploadReport> {
    let cp = store
        .load(key)
        .await
        .map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "cannot resume {key}: its checkpoint {} is unreadable",
                store.path_for(key).display()
            ))
        })?
        .with_context(|| {
            format!(
                "no saved upload {key} in {}; `chunkwise status` lists them",
                store.dir().display()
            )
        })?;
    let path = cp.source.path.clone().with_context(|| {
        format!("the saved upload {key} was not read from a file; it cannot be resumed here")
    })?;
    let api: ApiVersion = cp
        .target
        .api
        .strip_prefix("x-")
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!(
                "the saved upload {key} is for the API {:?}, which this command does not speak",
                cp.target.api
            )
        })?;
    let base_url = url::Url::parse(&cp.target.base_url)
        .with_context(|| format!("the saved upload {key} has no valid base URL"))?;
    // The target is the checkpoint's, whatever the settings say; the rest is from the
    // settings and flags.
    let builder = args
        .checkpoints
        .apply(args.pins.apply(args.settings.builder()))
        .origin(format!("checkpoint {key}"))
        .api_version(api)
        .base_url(Some(base_url.clone()));
    let settings = super::resolve(builder).await?;
    let (source, identity) = open_saved_source(&cp, &path)
        .await
        .with_context(|| format!("cannot open {path}, the file of the saved upload {key}"))?;
    cp.source.check_unchanged(&identity).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "{path} changed since its upload was interrupted; run `chunkwise upload \
             --no-resume {path}` to start over"
        ))
    })?;
    let client = settings
        .client_builder(credentials_for(Some(&base_url))?)?
        .build()?;
    let engine = Engine::new(Arc::new(client), settings.resumable_engine_config()?)?;
    if !global.quiet {
        note!("{key}: {}", output::clean(&path));
    }
    announce(&cp, global);
    let handle = engine.resume(cp, source);
    match progress::follow(handle, global, Duration::from_secs(1), interrupts).await {
        Ok(report) => Ok(report),
        Err(e) => {
            let hint =
                format!("run `chunkwise upload --no-resume {path}` to discard it and start over");
            Err(keeps_failing(e, store, key, &hint).await)
        }
    }
}

/// The most files tried for a saved path that was not UTF-8; see [`open_saved_source`].
///
/// Source: reasonable default; several names that differ only in their invalid bytes in one
/// directory are rare, and each try reads only the fingerprint's samples (192 KiB).
const MAX_LOSSY_PATH_CANDIDATES: usize = 16;

/// Opens the file of a saved upload and computes its identity.
///
/// A checkpoint keeps the path as UTF-8, lossily: a name with bytes that are not UTF-8 has
/// `U+FFFD` in their place and cannot be opened as written. Then every path whose lossy form
/// is the saved one is tried (at most [`MAX_LOSSY_PATH_CANDIDATES`]), and the one with the
/// identity of the checkpoint (size, modification time, fingerprint) is taken.
async fn open_saved_source(
    cp: &Checkpoint,
    path: &str,
) -> anyhow::Result<(Source, SourceIdentity)> {
    let open = |p: PathBuf| async move {
        let source = Source::file(&p).await?;
        let identity = SourceIdentity::of(&source).await?;
        anyhow::Ok((source, identity))
    };
    let direct = open(PathBuf::from(path)).await;
    if direct.is_ok() || !path.contains(char::REPLACEMENT_CHARACTER) {
        return direct;
    }
    let lossy = PathBuf::from(path);
    let candidates = tokio::task::spawn_blocking(move || lossy_matches(&lossy)).await?;
    for candidate in candidates {
        if let Ok((source, identity)) = open(candidate).await {
            if cp.source.check_unchanged(&identity).is_ok() {
                return Ok((source, identity));
            }
        }
    }
    direct
}

/// The existing paths whose lossy UTF-8 form is `lossy`, at most
/// [`MAX_LOSSY_PATH_CANDIDATES`]. Blocking.
fn lossy_matches(lossy: &std::path::Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for part in lossy.components() {
        let name = part.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if !name.contains(char::REPLACEMENT_CHARACTER) {
                next.push(base.join(part));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            next.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy() == name)
                    .map(|e| base.join(e.file_name())),
            );
        }
        next.truncate(MAX_LOSSY_PATH_CANDIDATES);
        found = next;
    }
    found
}
