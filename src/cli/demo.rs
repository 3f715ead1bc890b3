//! `chunkwise demo`: the README's main job. Starts the emulator behind an emulated cellular
//! link, uploads a generated video with live progress, and ends with the report and the
//! efficiency against the ideal time of the link.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chunkwise::emulator::{Emulator, demo_credentials};
use chunkwise::link::{IdealTime, LinkProfile, LinkProxy, ProxyOptions, RoundTrips, efficiency};
use chunkwise::protocol::ApiVersion;
use chunkwise::{Engine, MediaCategory, MediaSpec, Source, UploadReport};
use clap::Args;

use super::progress::{self, size};
use super::signals::Interrupts;
use super::{GlobalArgs, PinArgs, SettingsArgs, output, parse_size};

/// Size of the generated demo video.
///
/// Source: issue 3 ("a 64 MiB video, say"); at the `lte` profile's ~9.5 Mbit/s mean uplink
/// its ideal time is about a minute, so the demo ends well within two minutes.
const DEMO_SIZE: u64 = 64 * 1024 * 1024;

/// Seed of the generated video's bytes (any fixed value: the demo is reproducible).
const DEMO_SEED: u64 = 0x00C0_FFEE;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Link profile (a built-in name such as lte, 3g, step-20-2-20, lossy; or a Mahimahi trace file).
    #[arg(long, default_value = "lte")]
    link: String,
    /// Override the link's round-trip time, in milliseconds (split evenly between directions).
    #[arg(long)]
    rtt_ms: Option<u64>,
    /// Size of the generated video (bytes or with a unit: 64MiB).
    #[arg(long, value_parser = parse_size, default_value_t = DEMO_SIZE)]
    size: u64,
    /// API version (`api.version`; default v2).
    #[arg(long)]
    api: Option<ApiVersion>,
    #[command(flatten)]
    pins: PinArgs,
    /// Settings for the scheduler, retries and polling (the demo always talks to its own
    /// emulator, whatever `api.base_url` says).
    #[command(flatten)]
    settings: SettingsArgs,
    /// Write the final report as JSON to this path.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Resolves a link profile by name or trace file, with an optional RTT override.
pub(crate) async fn link_profile(spec: &str, rtt_ms: Option<u64>) -> anyhow::Result<LinkProfile> {
    // A name that is a file is a trace: say what is wrong with it, not "unknown link"; a
    // FIFO or device is refused before it is read (it may never end).
    let file = tokio::fs::metadata(spec).await.ok();
    if file.as_ref().is_some_and(|m| !m.is_file()) && LinkProfile::from_name(spec).is_err() {
        anyhow::bail!("cannot use {spec:?} as a trace file: it is not a regular file");
    }
    let mut profile = LinkProfile::resolve(spec)
        .await
        .with_context(|| match file {
            Some(_) => format!("cannot use the trace file {spec:?}"),
            None => format!(
                "unknown link {spec:?}; built-in profiles: {}",
                LinkProfile::names().join(", ")
            ),
        })?;
    if let Some(rtt) = rtt_ms {
        let one_way = Duration::from_millis(rtt) / 2;
        let up = profile.up().clone().with_delay(one_way);
        let down = profile.down().clone().with_delay(one_way);
        profile = profile.with_up(up).with_down(down);
    }
    Ok(profile)
}

/// Starts a link proxy in front of `upstream`.
pub(crate) async fn start_link(
    upstream: SocketAddr,
    profile: LinkProfile,
) -> anyhow::Result<LinkProxy> {
    Ok(LinkProxy::start(upstream, profile, ProxyOptions::default()).await?)
}

/// Writes `len` deterministic pseudo-random bytes to `path` without holding them in memory.
pub(crate) async fn generate(path: PathBuf, len: u64) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut x = DEMO_SEED;
        let mut block = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            for word in block.chunks_exact_mut(8) {
                // xorshift64: fast, incompressible enough for a demo payload.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.copy_from_slice(&x.to_le_bytes());
            }
            let n = left.min(block.len() as u64) as usize;
            out.write_all(&block[..n])?;
            left -= n as u64;
        }
        out.flush()
    })
    .await
    .context("generating the demo video")??;
    Ok(())
}

pub(crate) async fn run(args: DemoArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen()?;
    super::upload::check_report_path(args.report.as_deref()).await?;
    let mut settings = args.pins.apply(args.settings.builder());
    if let Some(api) = args.api {
        settings = settings.origin("command line --api").api_version(api);
    }
    let settings = super::resolve(settings).await?;
    let profile = link_profile(&args.link, args.rtt_ms).await?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir.path().join("demo-video.mp4");
    generate(path.clone(), args.size).await?;

    let emulator = Emulator::builder()
        .credentials(demo_credentials())
        .start()
        .await?;
    let proxy = start_link(emulator.addr(), profile.clone()).await?;
    let base_url = url::Url::parse(&format!("http://{}", proxy.addr()))?;
    let client = settings
        .client_builder(demo_credentials())?
        .base_url(base_url)
        .build()?;
    let engine = Engine::new(Arc::new(client), settings.engine_config()?)?;

    note!(
        "chunkwise demo: uploading a {} video to the local X {} emulator",
        size(args.size),
        settings.api().version
    );
    note!("link: {}", profile.summary());
    let start = proxy.schedule_time();
    let ideal = IdealTime::compute(&profile, start, args.size, RoundTrips::CHUNKED_UPLOAD);
    note!(
        "ideal completion time on this link: {:.1} s",
        ideal.total.as_secs_f64()
    );

    let source = Source::file(&path).await?;
    let spec = MediaSpec::new("video/mp4").with_category(MediaCategory::TweetVideo);
    let handle = engine.upload(source, spec);
    let report = progress::follow(handle, global, Duration::from_secs(2), &mut interrupts).await?;
    let verified = emulator.media_sha256(&report.media_id) == Some(file_sha256(path).await?);
    // The summary (with the media id) first, then the report file.
    output::stdout(&summary(&report, ideal.total, verified))?;
    super::upload::write_report(args.report.as_deref(), &report).await?;
    proxy.shutdown().await;
    emulator.shutdown().await;
    Ok(())
}

/// SHA-256 of a file, read in blocks on a blocking thread.
pub(crate) async fn file_sha256(path: PathBuf) -> anyhow::Result<[u8; 32]> {
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        use sha2::Digest as _;
        use std::io::Read as _;
        let mut file = std::fs::File::open(path)?;
        let mut hasher = sha2::Sha256::new();
        let mut block = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut block)?;
            if n == 0 {
                return Ok(hasher.finalize().into());
            }
            hasher.update(&block[..n]);
        }
    })
    .await
    .context("hashing the demo video")?
    .context("hashing the demo video")
}

/// The demo's closing report, for stdout.
fn summary(r: &UploadReport, ideal: Duration, verified: bool) -> String {
    let lines = [
        format!("media id           {}", r.media_id),
        format!(
            "size               {} in {} segments ({} to {})",
            size(r.total_bytes),
            r.segments,
            size(r.chunk_min),
            size(r.chunk_max)
        ),
        format!(
            "elapsed            {:.1} s (ideal {:.1} s)",
            r.elapsed.as_secs_f64(),
            ideal.as_secs_f64()
        ),
        format!("efficiency         {:.3}", efficiency(ideal, r.elapsed)),
        format!(
            "goodput            {}/s",
            size(r.goodput_bytes_per_sec as u64)
        ),
        format!(
            "APPEND latency     p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms
        ),
        format!("parallel APPENDs   up to {}", r.max_in_flight),
        format!(
            "retries            {} ({} sent again)",
            r.retries,
            size(r.bytes_resent)
        ),
        format!("processing         {:?}", r.processing_state),
        format!(
            "byte-identical     {}",
            if verified {
                "yes (the emulator's SHA-256 of the assembled media equals the file's)"
            } else {
                "NO: checksum mismatch"
            }
        ),
    ];
    lines.iter().map(|l| format!("{l}\n")).collect()
}
