//! Argument parsing and dispatch for the `chunkwise` binary.

/// `eprintln!` that cannot panic: a closed or full stderr (`2>&1 | true`) loses the line
/// instead of ending the process with a panic.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod config;
mod demo;
mod media;
mod output;
mod progress;
mod resume;
mod serve;
mod signals;
mod upload;

use std::path::PathBuf;

use chunkwise::scheduler::{ChunkMode, ParallelismMode};
use chunkwise::settings::{Settings, SettingsBuilder};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Adaptive, resumable chunked media upload for X/Twitter-style APIs.
#[derive(Debug, Parser)]
#[command(name = "chunkwise", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Log filter for stderr logs (`tracing` env-filter syntax, e.g. `chunkwise=debug`).
    /// `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    /// Log output format. With `json`, progress is reported as structured `tracing` events
    /// (target `chunkwise::progress`) instead of a bar or plain lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Print nothing but the result (no progress).
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local X media upload emulator until interrupted; prints its base URL.
    Serve(serve::ServeArgs),
    /// Upload a file and print its media id; resumes an interrupted upload of the same file
    /// to the same target.
    Upload(Box<upload::UploadArgs>),
    /// Continue saved (interrupted) uploads and print their media ids.
    Resume(resume::ResumeArgs),
    /// List saved (interrupted) uploads.
    Status(resume::StatusArgs),
    /// Ask the server for an uploaded media's processing state (STATUS) and print it as JSON.
    MediaStatus(media::MediaStatusArgs),
    /// Manage the subtitle tracks of an uploaded video.
    Subtitles(media::SubtitlesArgs),
    /// Upload a generated video to the bundled emulator through an emulated cellular link.
    Demo(demo::DemoArgs),
    /// Show the effective settings, check a settings file, or list the presets.
    Config(config::ConfigArgs),
    /// Run every strategy preset over emulated links and write a table against the ideal.
    Bench(bench::BenchArgs),
}

/// Where the settings of a command come from, besides its own flags.
///
/// Precedence: defaults < `--preset` < `--config` file < `CHUNKWISE_<SECTION>__<KEY>`
/// variables < `--set` < the command's own flags.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct SettingsArgs {
    /// Settings file (TOML; see `chunkwise config show` and examples/chunkwise.toml).
    #[arg(long, env = "CHUNKWISE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Named preset under the file: cellular, wifi, metered or background
    /// (`chunkwise config presets`).
    #[arg(long, env = "CHUNKWISE_PRESET", value_name = "NAME")]
    preset: Option<String>,
    /// Set one key as in the file, such as `--set scheduler.max_parallelism=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
}

impl SettingsArgs {
    /// A builder with these layers and the environment; the caller adds its flags.
    pub(crate) fn builder(&self) -> SettingsBuilder {
        let mut b = Settings::builder().env().origin("command line --preset");
        if let Some(p) = &self.preset {
            b = b.preset(p.clone());
        }
        if let Some(f) = &self.config {
            b = b.file(f.clone());
        }
        b = b.origin("command line --set");
        for (k, v) in &self.set {
            b = b.set(k.clone(), v.clone());
        }
        b
    }
}

/// Flags that pin the scheduler, shared by `upload` and `demo`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PinArgs {
    /// Pin the chunk size (`scheduler.chunk_size`; bytes, or with a unit: 4MiB, 512KiB).
    /// Grown when the file would need more than 1000 segments.
    #[arg(long, value_parser = parse_size)]
    chunk_size: Option<u64>,
    /// Pin the number of parallel APPENDs (`scheduler.parallelism`).
    #[arg(long)]
    parallel: Option<usize>,
}

impl PinArgs {
    /// Adds the pinned knobs to `b` as command-line values.
    pub(crate) fn apply(&self, mut b: SettingsBuilder) -> SettingsBuilder {
        if let Some(n) = self.chunk_size {
            b = b
                .origin("command line --chunk-size")
                .chunk_size(ChunkMode::Fixed(n));
        }
        if let Some(n) = self.parallel {
            b = b
                .origin("command line --parallel")
                .parallelism(ParallelismMode::Fixed(n));
        }
        b
    }
}

/// Where checkpoints are kept, for the commands that save or read them.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct CheckpointArgs {
    /// Directory of the checkpoints of interrupted uploads (`checkpoint.dir`; default
    /// `chunkwise` in the per-user state directory).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
}

impl CheckpointArgs {
    /// Adds `--checkpoint-dir` to `b` as a command-line value (made absolute against the
    /// current directory).
    pub(crate) fn apply(&self, b: SettingsBuilder) -> SettingsBuilder {
        match &self.checkpoint_dir {
            Some(dir) => b
                .origin("command line --checkpoint-dir")
                .checkpoint_dir(std::path::absolute(dir).unwrap_or_else(|_| dir.clone())),
            None => b,
        }
    }
}

/// Resolves settings off the async runtime (the file is read with blocking I/O).
pub(crate) async fn resolve(builder: SettingsBuilder) -> anyhow::Result<Settings> {
    Ok(tokio::task::spawn_blocking(move || builder.resolve()).await??)
}

/// Parses `KEY=VALUE`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| {
            format!("expected KEY=VALUE, such as scheduler.max_parallelism=4, got {s:?}")
        })
}

/// Installs the stderr `tracing` subscriber.
pub(crate) fn init_tracing(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    // With JSON logs, progress events are part of the log (unless --quiet).
    let progress = match (global.log_format, global.quiet) {
        (LogFormat::Json, false) => ",chunkwise::progress=info",
        _ => "",
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{}{progress}", global.log)))
        .unwrap_or_else(|_| EnvFilter::new(format!("warn{progress}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation can only fail if a subscriber is already set; keep that one.
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the chosen subcommand.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Upload(args) => upload::run(*args, &cli.global).await,
        Command::Resume(args) => resume::run_resume(args, &cli.global).await,
        Command::Status(args) => resume::run_status(args).await,
        Command::MediaStatus(args) => media::run_status(args).await,
        Command::Subtitles(args) => media::run_subtitles(args).await,
        Command::Demo(args) => demo::run(args, &cli.global).await,
        Command::Config(args) => config::run(args).await,
        Command::Bench(args) => bench::run(args, &cli.global).await,
    }
}

/// The exit code of a command that failed with `e`: the shell's code for the signal
/// (128 + its number) if a signal stopped it, else 1.
pub(crate) fn exit_code(e: &anyhow::Error) -> std::process::ExitCode {
    match e.downcast_ref::<signals::Interrupted>() {
        Some(i) => std::process::ExitCode::from(i.signal.exit_code()),
        None => std::process::ExitCode::FAILURE,
    }
}

/// An error and its causes on one line, without repeating a cause the message already shows,
/// and without control characters (server text in it is already cut short where it entered
/// the error).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    output::clean(&out)
}

/// Parses a byte size such as `4194304`, `4MiB`, `512 KiB` or `5MB`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}
