//! `chunkwise config`: show the effective settings, check a settings file, list the presets.

use std::path::PathBuf;

use chunkwise::Credentials;
use chunkwise::auth::{
    ENV_ACCESS_TOKEN, ENV_ACCESS_TOKEN_SECRET, ENV_API_KEY, ENV_API_SECRET, ENV_BEARER_TOKEN,
};
use chunkwise::settings::{PRESETS, Settings};
use clap::{Args, Subcommand};

use super::upload::env_credentials;
use super::{SettingsArgs, output};

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective settings as a TOML file, each value annotated with where it came
    /// from, and which credential variables are set (their values are never shown).
    Show(SettingsArgs),
    /// Check a settings file: every key known, every value in range. Exits non-zero and lists
    /// every problem (key, value, file and line) otherwise.
    Check {
        /// The file.
        file: PathBuf,
        /// Check it on top of this preset.
        #[arg(long)]
        preset: Option<String>,
    },
    /// List the presets and what each changes.
    Presets,
}

/// The credential variables, in the order `Credentials::from_env` reads them.
const CREDENTIAL_VARS: [&str; 5] = [
    ENV_API_KEY,
    ENV_API_SECRET,
    ENV_ACCESS_TOKEN,
    ENV_ACCESS_TOKEN_SECRET,
    ENV_BEARER_TOKEN,
];

pub(crate) async fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Show(layers) => {
            let settings = super::resolve(layers.builder()).await?;
            output::stdout(&format!("{}{}", settings.to_toml(), credentials_block()))
        }
        ConfigCommand::Check { file, preset } => {
            let mut b = Settings::builder().origin("command line --preset");
            if let Some(p) = preset {
                b = b.preset(p);
            }
            let b = b.file(file.clone());
            match tokio::task::spawn_blocking(move || b.resolve()).await? {
                Ok(settings) => {
                    let set = settings.provenance().iter().count();
                    output::line(&format!(
                        "{}: ok ({set} keys differ from the defaults)",
                        file.display()
                    ))
                }
                Err(problems) => {
                    let lines: String = problems
                        .0
                        .iter()
                        .map(|p| format!("{}\n", output::clean(&p.to_string())))
                        .collect();
                    output::stdout(&lines)?;
                    anyhow::bail!(
                        "{}: {} invalid setting{}",
                        file.display(),
                        problems.0.len(),
                        if problems.0.len() == 1 { "" } else { "s" }
                    )
                }
            }
        }
        ConfigCommand::Presets => {
            let text: String = PRESETS
                .iter()
                .map(|p| format!("# {}: {}{}\n", p.name, p.summary, p.toml))
                .collect();
            output::stdout(&text)
        }
    }
}

/// Which credential variables are set, never their values, and which credentials apply.
fn credentials_block() -> String {
    let mut out = String::from(
        "\n# Credentials come only from these environment variables, never from settings files;\n\
         # their values are never shown.\n",
    );
    for var in CREDENTIAL_VARS {
        let state = match std::env::var_os(var) {
            Some(v) if !v.is_empty() => "set (hidden)",
            Some(_) => "set but empty",
            None => "not set",
        };
        out.push_str(&format!("#   {var:<22} {state}\n"));
    }
    let in_use = match env_credentials() {
        Ok(Some(Credentials::OAuth1(_))) => {
            "OAuth 1.0a user context (X_API_KEY and the others)".to_string()
        }
        Ok(Some(Credentials::Bearer(_))) => "OAuth 2 bearer token (X_BEARER_TOKEN)".to_string(),
        Ok(None) => {
            "none (uploads to a loopback base URL use the emulator's demo credentials)".to_string()
        }
        Err(e) => format!("none: {e}"),
    };
    out.push_str(&format!("#   in use: {in_use}\n"));
    out
}
