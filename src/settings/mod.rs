//! One settings model for every entry point: the library, files, the environment and the
//! command line.
//!
//! Every knob the engine has is a key of [`Settings`], grouped in sections (`[api]`,
//! `[scheduler]`, `[retry]`, `[polling]`, `[checkpoint]`; see [`KEYS`]). Settings are
//! layered, each layer overriding the ones before it:
//!
//! 1. the defaults ([`Settings::default`]),
//! 2. a named [preset](presets) (`cellular`, `wifi`, `metered`, `background`),
//! 3. a TOML file,
//! 4. environment variables `CHUNKWISE_<SECTION>__<KEY>` (such as
//!    `CHUNKWISE_SCHEDULER__MAX_PARALLELISM=4`),
//! 5. explicit values: [`SettingsBuilder`] calls, or the command line's flags.
//!
//! Whatever layer a value comes from, it is checked the same way, and a problem names the key,
//! the value, what is allowed and where the value came from (file and line, or variable):
//!
//! ```
//! use chunkwise::settings::{LoadOptions, Settings};
//!
//! let err = Settings::builder()
//!     .env_vars([("CHUNKWISE_SCHEDULER__PARALLELISM", "0")])
//!     .build()
//!     .unwrap_err();
//! let msg = err.to_string();
//! assert!(msg.contains("scheduler.parallelism = 0"), "{msg}");
//! assert!(msg.contains("CHUNKWISE_SCHEDULER__PARALLELISM"), "{msg}");
//! assert!(msg.contains("1..=32"), "{msg}");
//! ```
//!
//! Unknown keys are errors (a typo must not pass silently), with the closest known key as a
//! suggestion. Credentials are never settings: they come from the `X_*` environment variables
//! ([`Credentials::from_env`]) and a file or `CHUNKWISE_` variable that tries to set one is
//! rejected without echoing its value.
//!
//! Sizes are bytes or a number with a unit (`"4 MiB"`, `"512KiB"`, `"5MB"`), durations need a
//! unit (`"30s"`, `"500ms"`, `"1m 30s"`), modes are `"auto"` or a value, optional limits
//! are a value or `"off"`, rates are `AMOUNT/PERIOD` (`"1 MiB/s"`, `"900/15m"`).
//!
//! ```
//! use chunkwise::scheduler::ParallelismMode;
//! use chunkwise::settings::Settings;
//!
//! let settings = Settings::builder()
//!     .preset("cellular")
//!     .parallelism(ParallelismMode::Fixed(2))
//!     .build()?;
//! assert_eq!(settings.scheduler().adaptive.max_parallelism, 4); // from the preset
//! println!("{}", settings.origin("scheduler.max_parallelism").unwrap()); // preset cellular
//! let config = settings.engine_config()?; // hand to Engine::new
//! # let _ = config;
//! # Ok::<(), chunkwise::Error>(())
//! ```

mod keys;
mod load;
pub mod presets;
mod render;
mod validate;
mod values;

#[cfg(test)]
mod tests;

/// The settings loader's fuzz entry point, for the `settings` target in `fuzz/` and the
/// seeded-corpus tests. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{Settings, load};

    /// Loads `data` as the text of a settings file (straight to the loader, no file system)
    /// and checks that a refusal lists at least one problem, each with a message, and that
    /// settings that load print ([`Settings::to_toml`]) as a file that loads back to the same
    /// values. Returns the property that failed; a panic anywhere is a bug too.
    pub fn load_settings(data: &[u8]) -> Result<(), String> {
        let Ok(text) = std::str::from_utf8(data) else {
            return Ok(());
        };
        let settings = match from_text(text) {
            Ok(s) => s,
            Err(problems) if problems.0.is_empty() => {
                return Err("a refusal without a problem".into());
            }
            Err(problems) => {
                return match problems.0.iter().find(|p| p.message.is_empty()) {
                    Some(p) => Err(format!("a problem without a message: {p:?}")),
                    None => Ok(()),
                };
            }
        };
        let shown = settings.to_toml();
        let again = from_text(&shown)
            .map_err(|p| format!("to_toml's output does not load back: {p}\n{shown}"))?;
        if load::to_dict(&again) == load::to_dict(&settings) {
            Ok(())
        } else {
            Err(format!(
                "the settings changed in a round trip:\n{text}\nbecame\n{shown}"
            ))
        }
    }

    fn from_text(text: &str) -> Result<Settings, super::Problems> {
        let mut b = Settings::builder().file("fuzz-input.toml");
        b.file_text = Some(text.to_string());
        b.resolve()
    }
}

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::auth::Credentials;
use crate::checkpoint::FileCheckpointStore;
use crate::engine::{
    DEFAULT_CONTROL_TIMEOUT, EngineConfig, OneShotMode, PollingConfig, RetryPolicy,
};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::DEFAULT_MAX_APPEND_BYTES;
use crate::protocol::{ApiVersion, AppendEncoding, XClient, XClientBuilder};
use crate::scheduler::{AdaptiveConfig, AdaptiveStrategy, Observation, PlanContext, Strategy};

pub use keys::{ENV_PREFIX, KEYS, Key, SECTIONS, env_var, key};
pub use load::MAX_SETTINGS_FILE_BYTES;
pub use presets::{PRESETS, Preset};
pub use validate::MAX_APPEND_BYTES_LIMIT;

/// The default checkpoint directory's last component.
const CHECKPOINT_DIR_NAME: &str = "chunkwise";

/// `[api]`: which API, where, and how APPEND carries its payload.
///
/// # Default
///
/// v2, the version's X host, raw `media`, 5 MiB bodies, a 60 s control timeout, category
/// limits enforced, one-shot uploads `auto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSettings {
    /// API version.
    #[serde(with = "values::api_version")]
    pub version: ApiVersion,
    /// Base URL; `None`: [`ApiVersion::default_base_url`].
    #[serde(
        with = "values::base_url",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub base_url: Option<Url>,
    /// Send segments base64-encoded (`media_data`) instead of raw `media`.
    pub media_data: bool,
    /// Largest APPEND body on the wire, in bytes.
    #[serde(with = "values::size")]
    pub max_append_bytes: u64,
    /// Deadline of one INIT, FINALIZE or STATUS request.
    #[serde(with = "values::duration")]
    pub control_timeout: Duration,
    /// Reject files above their category's documented size before any request.
    pub enforce_category_limits: bool,
    /// When a new upload goes up in one request instead of INIT, APPEND and FINALIZE.
    #[serde(with = "values::one_shot", default)]
    pub one_shot: OneShotMode,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            version: ApiVersion::default(),
            base_url: None,
            media_data: false,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            control_timeout: DEFAULT_CONTROL_TIMEOUT,
            enforce_category_limits: true,
            one_shot: OneShotMode::Auto,
        }
    }
}

impl ApiSettings {
    /// The largest segment payload one APPEND can carry with these settings.
    pub fn max_payload(&self) -> u64 {
        crate::limits::max_payload_per_append(self.max_append_bytes, self.media_data)
    }
}

/// `[scheduler]`: chunk size, parallelism, deadlines and caps: the adaptive controller's
/// [`AdaptiveConfig`], plus an optional pinned APPEND deadline.
///
/// # Default
///
/// [`AdaptiveConfig::default()`] (both knobs `auto`), deadline `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SchedulerSettings {
    /// The adaptive controller's settings.
    pub adaptive: AdaptiveConfig,
    /// `Some(d)` pins every APPEND's deadline to `d` instead of the controller's size-aware
    /// deadline; `None` (`"auto"`) leaves it to the controller.
    pub request_deadline: Option<Duration>,
}

/// `[checkpoint]`: where resumable uploads keep their checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSettings {
    /// The directory; default [`default_checkpoint_dir`].
    #[serde(with = "values::dir")]
    pub dir: PathBuf,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            dir: default_checkpoint_dir(),
        }
    }
}

/// The per-user default checkpoint directory: `chunkwise` in the state directory
/// (`$XDG_STATE_HOME`, else `~/.local/state` on Linux), else in the local data directory
/// (macOS, Windows), else in the temporary directory.
pub fn default_checkpoint_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join(CHECKPOINT_DIR_NAME)
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A named preset.
    Preset(String),
    /// A settings file, and the line of the key when it could be found.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key.
        line: Option<usize>,
    },
    /// An environment variable (its name).
    Env(String),
    /// An explicit value: a builder call or a command-line flag (the label says which).
    Explicit(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Preset(name) => write!(f, "preset {name}"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{} line {line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Explicit(label) => f.write_str(label),
        }
    }
}

/// Where each key's value came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance(BTreeMap<&'static str, Origin>);

impl Provenance {
    /// The origin of `key` ([`Origin::Default`] for a known key nobody set).
    pub fn get(&self, key: &str) -> Option<&Origin> {
        static DEFAULT: Origin = Origin::Default;
        self.0.get(key).or_else(|| keys::key(key).map(|_| &DEFAULT))
    }

    /// Every key that is not at its default, with its origin.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Origin)> {
        self.0
            .iter()
            .filter(|(_, o)| **o != Origin::Default)
            .map(|(k, o)| (*k, o))
    }

    fn set(&mut self, key: &'static str, origin: Origin) {
        self.0.insert(key, origin);
    }
}

/// One invalid setting: the key, its value, where it came from and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`scheduler.chunk_size`), or what failed (`preset`, `file`).
    pub key: String,
    /// The value as written, when it can be shown (never for unknown keys, which may be
    /// misplaced secrets).
    pub value: Option<String>,
    /// Where the value came from.
    pub origin: Origin,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} = {v} ({}): {}", self.key, self.origin, self.message),
            None => write!(f, "{} ({}): {}", self.key, self.origin, self.message),
        }
    }
}

/// Every problem found in a set of layers. Converts into an [`Error`] of kind
/// [`ErrorKind::InvalidConfig`] listing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} invalid setting{}: ", if n == 1 { "" } else { "s" })?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl From<Problems> for Error {
    fn from(p: Problems) -> Self {
        Error::new(ErrorKind::InvalidConfig, p.to_string())
    }
}

/// Where [`Settings::load`] looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// A TOML settings file.
    pub file: Option<PathBuf>,
    /// A preset name (see [`PRESETS`]).
    pub preset: Option<String>,
    /// Read `CHUNKWISE_<SECTION>__<KEY>` environment variables.
    pub env: bool,
    /// With `env`, read these variables instead of the process environment (for tests, and
    /// for hosts that keep their own environment map).
    pub env_vars: Option<Vec<(String, String)>>,
}

/// Where the environment layer reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvSource {
    Off,
    Process,
    Vars(Vec<(String, String)>),
}

/// The effective settings, and where each value came from.
///
/// Made by [`Settings::default`], [`Settings::load`] or [`Settings::builder`]; always
/// validated. Read a section with [`api`](Self::api), [`scheduler`](Self::scheduler),
/// [`retry`](Self::retry), [`polling`](Self::polling) and [`checkpoint`](Self::checkpoint).
/// Values are changed through a [`SettingsBuilder`], so that every value is checked and its
/// origin known. See the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    api: ApiSettings,
    scheduler: SchedulerSettings,
    retry: RetryPolicy,
    polling: PollingConfig,
    checkpoint: CheckpointSettings,
    provenance: Provenance,
}

impl Settings {
    /// A builder starting from the defaults (no preset, no file, no environment).
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// Loads settings from the layers `options` names, on top of the defaults.
    ///
    /// Reads the file with blocking I/O: call it before starting the async runtime, or from
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] listing every [`Problem`]: an unreadable or malformed
    /// file, an unknown key or preset, a value of the wrong type or out of range.
    pub fn load(options: LoadOptions) -> Result<Settings> {
        SettingsBuilder::default().options(options).build()
    }

    /// `[api]`.
    pub fn api(&self) -> &ApiSettings {
        &self.api
    }

    /// `[scheduler]`.
    pub fn scheduler(&self) -> &SchedulerSettings {
        &self.scheduler
    }

    /// `[retry]`.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// `[polling]`.
    pub fn polling(&self) -> &PollingConfig {
        &self.polling
    }

    /// `[checkpoint]`.
    pub fn checkpoint(&self) -> &CheckpointSettings {
        &self.checkpoint
    }

    /// The checkpoint directory.
    pub fn checkpoint_dir(&self) -> &Path {
        &self.checkpoint.dir
    }

    /// Where each value came from.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Where `key`'s value came from; `None` for an unknown key.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.provenance.get(key)
    }

    /// The engine configuration these settings describe: an [`AdaptiveStrategy`] per upload
    /// (its deadline pinned when `scheduler.request_deadline` is set), the retry policy, STATUS
    /// polling, the control timeout and the category-limit check.
    ///
    /// **No checkpoint store**: a library caller gets no files written behind its back, so
    /// this configuration saves no checkpoints. To make uploads resumable across processes,
    /// as the `chunkwise` command line always does, use
    /// [`resumable_engine_config`](Self::resumable_engine_config) (the store in
    /// `checkpoint.dir`), or add a store of your own with
    /// [`EngineConfig::with_checkpoint_store`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] if a value is out of range (not for settings made by this
    /// module, which are validated when built).
    pub fn engine_config(&self) -> Result<EngineConfig> {
        let strategy = AdaptiveStrategy::new(self.scheduler.adaptive)?;
        let config = EngineConfig {
            retry: self.retry.clone(),
            polling: self.polling,
            control_timeout: self.api.control_timeout,
            enforce_category_limits: self.api.enforce_category_limits,
            one_shot: self.api.one_shot,
            ..EngineConfig::default()
        };
        let config = match self.scheduler.request_deadline {
            None => config.with_strategy(move || strategy.clone()),
            Some(deadline) => config.with_strategy(move || PinnedDeadline {
                inner: strategy.clone(),
                deadline,
            }),
        };
        config.validate()?;
        Ok(config)
    }

    /// The checkpoint store in `checkpoint.dir` ([`checkpoint_dir`](Self::checkpoint_dir)):
    /// one file per interrupted upload. The directory is created at the first save.
    pub fn checkpoint_store(&self) -> FileCheckpointStore {
        FileCheckpointStore::new(self.checkpoint.dir.clone())
    }

    /// [`engine_config`](Self::engine_config) plus the [`checkpoint_store`](Self::checkpoint_store):
    /// every upload saves its checkpoint in `checkpoint.dir` after INIT and acknowledged
    /// segments, and removes it once FINALIZE succeeded. What the command line uses.
    ///
    /// # Errors
    ///
    /// As [`engine_config`](Self::engine_config).
    pub fn resumable_engine_config(&self) -> Result<EngineConfig> {
        Ok(self
            .engine_config()?
            .with_checkpoint_store(std::sync::Arc::new(self.checkpoint_store())))
    }

    /// An [`XClient`] builder for these `[api]` settings and `credentials`. Add an HTTP
    /// client or override the base URL before [`build`](XClientBuilder::build) if needed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] if the API settings are out of range (not for settings
    /// made by this module, which are validated when built).
    pub fn client_builder(&self, credentials: Credentials) -> Result<XClientBuilder> {
        if let Some(p) = validate::api_problem(&self.api) {
            return Err(Error::new(ErrorKind::InvalidConfig, p));
        }
        let mut b = XClient::builder()
            .api(self.api.version)
            .credentials(credentials)
            .append_encoding(if self.api.media_data {
                AppendEncoding::Base64
            } else {
                AppendEncoding::Raw
            })
            .max_append_bytes(self.api.max_append_bytes);
        if let Some(url) = &self.api.base_url {
            b = b.base_url(url.clone());
        }
        Ok(b)
    }

    /// The settings as a TOML file, each key annotated with its origin: what `chunkwise config
    /// show` prints. The output loads back to the same values.
    pub fn to_toml(&self) -> String {
        render::to_toml(self)
    }
}

/// An [`AdaptiveStrategy`] whose APPEND deadline is pinned (`scheduler.request_deadline`).
#[derive(Debug, Clone)]
struct PinnedDeadline {
    inner: AdaptiveStrategy,
    deadline: Duration,
}

impl Strategy for PinnedDeadline {
    fn chunk_size(&mut self, ctx: &PlanContext) -> u64 {
        self.inner.chunk_size(ctx)
    }

    fn max_in_flight(&self, now: tokio::time::Instant) -> usize {
        self.inner.max_in_flight(now)
    }

    fn start_attempt(&mut self, now: tokio::time::Instant, bytes: u64) -> Duration {
        // The controller charges its rate caps here (once per attempt): keep calling it.
        let _ = self.inner.start_attempt(now, bytes);
        self.deadline
    }

    fn stall_timeout(&self) -> Option<Duration> {
        self.inner.stall_timeout()
    }

    fn not_before(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        self.inner.not_before(now)
    }

    fn export_state(&self) -> Option<serde_json::Value> {
        Strategy::export_state(&self.inner)
    }

    fn import_state(&mut self, state: &serde_json::Value) {
        Strategy::import_state(&mut self.inner, state);
    }

    fn observe(&mut self, obs: &Observation) {
        self.inner.observe(obs)
    }
}

/// One explicit typed value.
struct Override {
    key: &'static str,
    origin: Origin,
    apply: Box<dyn FnOnce(&mut Settings) + Send + Sync>,
}

impl fmt::Debug for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Override")
            .field("key", &self.key)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Builds [`Settings`] from layers and explicit values; see the [module docs](self).
///
/// Layer sources ([`preset`](Self::preset), [`file`](Self::file), [`env`](Self::env)) can be
/// given in any order: precedence is always defaults < preset < file < environment < explicit.
/// Explicit values are the typed setters and [`set`](Self::set); typed setters are applied
/// last, so they win over a `set` of the same key.
#[derive(Debug)]
pub struct SettingsBuilder {
    preset: Option<(String, Origin)>,
    file: Option<PathBuf>,
    /// The file's text, given instead of read (the fuzz entry point).
    file_text: Option<String>,
    env: EnvSource,
    strings: Vec<(String, String, Origin)>,
    typed: Vec<Override>,
    label: String,
}

impl Default for SettingsBuilder {
    fn default() -> Self {
        SettingsBuilder {
            preset: None,
            file: None,
            file_text: None,
            env: EnvSource::Off,
            strings: Vec::new(),
            typed: Vec::new(),
            label: "builder".to_string(),
        }
    }
}

impl SettingsBuilder {
    /// Applies the layers of `options`.
    pub fn options(mut self, options: LoadOptions) -> Self {
        if let Some(name) = options.preset {
            self = self.preset(name);
        }
        if let Some(file) = options.file {
            self = self.file(file);
        }
        self.env = match (options.env, options.env_vars) {
            (false, _) => EnvSource::Off,
            (true, None) => EnvSource::Process,
            (true, Some(vars)) => EnvSource::Vars(vars),
        };
        self
    }

    /// Layers the named preset over the defaults (see [`PRESETS`]).
    pub fn preset(mut self, name: impl Into<String>) -> Self {
        self.preset = Some((name.into(), Origin::Explicit(self.label.clone())));
        self
    }

    /// Layers a TOML file over the preset.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Layers the process's `CHUNKWISE_<SECTION>__<KEY>` variables over the file.
    pub fn env(mut self) -> Self {
        self.env = EnvSource::Process;
        self
    }

    /// Layers these variables over the file, as if they were the environment.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = EnvSource::Vars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Names where the following explicit values come from, for provenance and errors (such
    /// as `"command line --chunk-size"`). Default `"builder"`.
    pub fn origin(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Sets `key` (dotted, such as `scheduler.max_parallelism`) from text written as in a
    /// file or variable (`"4"`, `"1 MiB/s"`, `"auto"`). Checked by [`build`](Self::build).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let origin = Origin::Explicit(self.label.clone());
        self.strings.push((key.into(), value.into(), origin));
        self
    }

    pub(super) fn typed_override(
        mut self,
        key: &'static str,
        f: impl FnOnce(&mut Settings) + Send + Sync + 'static,
    ) -> Self {
        let origin = Origin::Explicit(self.label.clone());
        self.typed.push(Override {
            key,
            origin,
            apply: Box::new(f),
        });
        self
    }

    /// Resolves the layers and checks every value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] listing every [`Problem`] (see [`resolve`](Self::resolve)).
    pub fn build(self) -> Result<Settings> {
        self.resolve().map_err(Error::from)
    }

    /// Resolves the layers and checks every value, returning the problems themselves (for
    /// tools that print them one per line, like `chunkwise config check`).
    ///
    /// Reads the file, if any, with blocking I/O.
    ///
    /// # Errors
    ///
    /// Every problem found: an unreadable or malformed file, an unknown key, preset or
    /// variable, a value of the wrong type, or a value out of range.
    pub fn resolve(self) -> std::result::Result<Settings, Problems> {
        load::resolve(self)
    }
}
