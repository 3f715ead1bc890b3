//! `chunkwise serve`: run the local emulator until interrupted.

use std::net::SocketAddr;

use chunkwise::MediaCategory;
use chunkwise::emulator::{Emulator, EmulatorConfig};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Keep the upload sessions in this directory and start with those saved there, so a
    /// restarted emulator (on the same --listen address) lets clients carry on.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Raise (or lower) the size limit of the video categories (tweet_video, amplify_video,
    /// dm_video), e.g. `8GiB` for v2 accounts with larger limits. Default: 512 MiB.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    video_max_bytes: Option<u64>,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (credentials, from_env) = match super::upload::env_credentials()? {
        Some(c) => (c, true),
        None => (chunkwise::emulator::demo_credentials(), false),
    };
    let mut config = EmulatorConfig::default();
    if let Some(max) = args.video_max_bytes {
        for c in [
            MediaCategory::TweetVideo,
            MediaCategory::AmplifyVideo,
            MediaCategory::DmVideo,
        ] {
            config.category_max_bytes.insert(c, max);
        }
    }
    let mut builder = Emulator::builder()
        .credentials(credentials)
        .config(config)
        .bind(args.listen);
    if let Some(dir) = args.state_dir {
        builder = builder.state_dir(dir);
    }
    let emulator = builder.start().await?;
    // The base URL alone on stdout, so scripts can read it; the rest goes to stderr.
    super::output::line(emulator.base_url().as_str())?;
    if from_env {
        note!(
            "accepting requests signed with the credentials in X_API_KEY/X_API_SECRET/X_ACCESS_TOKEN/X_ACCESS_TOKEN_SECRET or X_BEARER_TOKEN"
        );
    } else {
        note!(
            "no X_* credentials set: accepting the emulator's demo credentials (see `chunkwise::emulator::demo_credentials`); `chunkwise upload --base-url {}` uses them automatically",
            emulator.base_url()
        );
    }
    note!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    emulator.shutdown().await;
    Ok(())
}
