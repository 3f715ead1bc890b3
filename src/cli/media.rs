//! `chunkwise media-status` and `chunkwise subtitles delete`: calls on media uploaded earlier
//! (issue 14).

use anyhow::Context as _;
use chunkwise::MediaCategory;
use chunkwise::protocol::{ApiVersion, LanguageCode, MediaId, UploadProtocol, XClient};
use clap::{Args, Subcommand};

use super::SettingsArgs;
use super::upload::credentials_for;

/// Where the API is, for the commands that call it without uploading.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Base URL of the API (`api.base_url`; X's host for the API version when unset; the
    /// emulator's URL, as printed by `chunkwise serve`, for local runs).
    #[arg(long)]
    base_url: Option<url::Url>,
    /// API version (`api.version`): v1 (v1.1 `media/upload.json`) or v2
    /// (`/2/media/upload/...`). Default v2.
    #[arg(long)]
    api: Option<ApiVersion>,
}

impl ClientArgs {
    /// The settings layers plus `--base-url` and `--api`, which win over every layer.
    pub(crate) fn builder(&self) -> chunkwise::settings::SettingsBuilder {
        let mut b = self.settings.builder();
        if let Some(url) = &self.base_url {
            b = b
                .origin("command line --base-url")
                .base_url(Some(url.clone()));
        }
        if let Some(api) = self.api {
            b = b.origin("command line --api").api_version(api);
        }
        b
    }

    /// The X client these arguments and the settings describe.
    async fn client(&self) -> anyhow::Result<XClient> {
        let settings = super::resolve(self.builder()).await?;
        let credentials = credentials_for(settings.api().base_url.as_ref())?;
        Ok(settings.client_builder(credentials)?.build()?)
    }
}

#[derive(Debug, Args)]
pub(crate) struct MediaStatusArgs {
    /// The media id.
    media_id: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SubtitlesArgs {
    #[command(subcommand)]
    command: SubtitlesCommand,
}

#[derive(Debug, Subcommand)]
enum SubtitlesCommand {
    /// Remove a video's subtitle track in one language.
    Delete {
        /// The video's media id.
        video_id: String,
        /// The track's language: two letters, such as EN.
        language: String,
        /// The video's category: tweet_video (default) or amplify_video.
        #[arg(long)]
        category: Option<MediaCategory>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Replaces control characters (terminal escapes among them) with U+FFFD, so server text
/// cannot drive the terminal it is printed on.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Asks the server for a media's processing state (STATUS) and prints it as one JSON line.
pub(crate) async fn run_status(args: MediaStatusArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let id = MediaId(args.media_id);
    let status = client.status(&id).await.with_context(|| {
        format!(
            "STATUS of media {} (X answers STATUS only for video and GIF media processed \
             asynchronously)",
            sanitize(id.as_str())
        )
    })?;
    println!("{}", sanitize(&serde_json::to_string(&status)?));
    Ok(())
}

/// Runs `chunkwise subtitles ...`.
pub(crate) async fn run_subtitles(args: SubtitlesArgs) -> anyhow::Result<()> {
    match args.command {
        SubtitlesCommand::Delete {
            video_id,
            language,
            category,
            client,
        } => {
            let language: LanguageCode = language.parse()?;
            let client = client.client().await?;
            let video = MediaId(video_id);
            client.delete_subtitles(&video, category, &language).await?;
            eprintln!(
                "removed the {language} subtitles of media {}",
                sanitize(video.as_str())
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(
            sanitize("ok\u{1b}[2J\u{9b}x\n"),
            "ok\u{fffd}[2J\u{fffd}x\u{fffd}"
        );
        assert_eq!(sanitize("été"), "été");
    }
}
