//! Argument parsing and dispatch for the `chunkwise` binary.

mod bench;
mod demo;
mod progress;
mod serve;
mod upload;

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
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print nothing but the result (no progress).
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local X media upload emulator until interrupted; prints its base URL.
    Serve(serve::ServeArgs),
    /// Upload a file and print its media id.
    Upload(upload::UploadArgs),
    /// Upload a generated video to the bundled emulator through an emulated cellular link.
    Demo(demo::DemoArgs),
    /// Run every strategy preset over emulated links and write a table against the ideal.
    Bench(bench::BenchArgs),
}

/// Installs the stderr `tracing` subscriber.
pub(crate) fn init_tracing(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&global.log))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
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
        Command::Upload(args) => upload::run(args, &cli.global).await,
        Command::Demo(args) => demo::run(args, &cli.global).await,
        Command::Bench(args) => bench::run(args, &cli.global).await,
    }
}

/// An error and its causes on one line, without repeating a cause the message already shows.
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
    out.replace('\n', " ")
}

/// Parses a byte size such as `4194304`, `4MiB`, `512 KiB` or `5MB`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}
