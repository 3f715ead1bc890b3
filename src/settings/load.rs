//! Resolving the layers: defaults < preset < file < environment < explicit, with figment doing
//! the merge and remembering which layer every value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use super::keys::{self, ENV_PREFIX, KEYS, SECTIONS, closest};
use super::values;
use super::{
    ApiSettings, CheckpointSettings, EnvSource, Origin, Problem, Problems, Provenance,
    SchedulerSettings, Settings, SettingsBuilder, presets,
};
use crate::checkpoint::{CappedReadError, read_regular_capped};
use crate::engine::{PollingConfig, RetryPolicy};
use crate::limits::MIB;
use crate::scheduler::{AdaptiveConfig, ChunkMode, ParallelismMode, RateCap};

/// The largest settings file read: 1 MiB.
///
/// Source: reasonable default; `examples/chunkwise.toml`, which documents every key, is under
/// 4 KiB, so 1 MiB is hundreds of times what a settings file needs, while `--config
/// /dev/zero`-like mistakes or a huge file stop after 1 MiB instead of filling the memory.
pub const MAX_SETTINGS_FILE_BYTES: u64 = MIB;

/// The file format: [`Settings`] without provenance, as serde sees it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    api: ApiSettings,
    scheduler: RawScheduler,
    #[serde(with = "RetryDef")]
    retry: RetryPolicy,
    #[serde(with = "PollingDef")]
    polling: PollingConfig,
    checkpoint: CheckpointSettings,
}

/// `[scheduler]` in the file: [`AdaptiveConfig`]'s fields (`chunk` written `chunk_size`) and
/// the pinned deadline. Written out rather than `#[serde(flatten)]`ed, because flattening
/// buffers the values and loses the key paths figment puts in errors.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    #[serde(with = "values::chunk_mode")]
    chunk_size: ChunkMode,
    #[serde(with = "values::parallelism_mode")]
    parallelism: ParallelismMode,
    #[serde(with = "values::size")]
    initial_chunk: u64,
    #[serde(with = "values::size")]
    min_chunk: u64,
    #[serde(with = "values::duration")]
    target_chunk_time: Duration,
    segment_reserve: f64,
    initial_parallelism: usize,
    max_parallelism: usize,
    deadline_gain: f64,
    #[serde(with = "values::duration")]
    deadline_floor: Duration,
    #[serde(with = "values::duration_or_auto")]
    request_deadline: Option<Duration>,
    #[serde(with = "values::duration_or_off")]
    stall_timeout: Option<Duration>,
    #[serde(with = "values::rate::byte_rate")]
    byte_rate_cap: Option<RateCap>,
    #[serde(with = "values::rate::request_rate")]
    request_rate_cap: Option<RateCap>,
}

impl From<&SchedulerSettings> for RawScheduler {
    fn from(s: &SchedulerSettings) -> Self {
        let a = &s.adaptive;
        RawScheduler {
            chunk_size: a.chunk,
            parallelism: a.parallelism,
            initial_chunk: a.initial_chunk,
            min_chunk: a.min_chunk,
            target_chunk_time: a.target_chunk_time,
            segment_reserve: a.segment_reserve,
            initial_parallelism: a.initial_parallelism,
            max_parallelism: a.max_parallelism,
            deadline_gain: a.deadline_gain,
            deadline_floor: a.deadline_floor,
            request_deadline: s.request_deadline,
            stall_timeout: a.stall_timeout,
            byte_rate_cap: a.byte_rate_cap,
            request_rate_cap: a.request_rate_cap,
        }
    }
}

impl From<RawScheduler> for SchedulerSettings {
    fn from(r: RawScheduler) -> Self {
        SchedulerSettings {
            adaptive: AdaptiveConfig {
                chunk: r.chunk_size,
                parallelism: r.parallelism,
                initial_chunk: r.initial_chunk,
                min_chunk: r.min_chunk,
                target_chunk_time: r.target_chunk_time,
                segment_reserve: r.segment_reserve,
                initial_parallelism: r.initial_parallelism,
                max_parallelism: r.max_parallelism,
                deadline_gain: r.deadline_gain,
                deadline_floor: r.deadline_floor,
                stall_timeout: r.stall_timeout,
                byte_rate_cap: r.byte_rate_cap,
                request_rate_cap: r.request_rate_cap,
            },
            request_deadline: r.request_deadline,
        }
    }
}

/// `[retry]`: [`RetryPolicy`] as written in a file.
#[derive(Serialize, Deserialize)]
#[serde(remote = "RetryPolicy", deny_unknown_fields)]
struct RetryDef {
    max_attempts: u32,
    #[serde(with = "values::duration")]
    transient_base: Duration,
    #[serde(with = "values::duration")]
    throttle_base: Duration,
    #[serde(with = "values::duration")]
    max_delay: Duration,
    budget_ratio: f64,
    budget_min: u32,
    #[serde(with = "values::duration")]
    max_unreachable: Duration,
    #[serde(with = "values::duration")]
    max_store_outage: Duration,
    #[serde(with = "values::duration")]
    max_wait: Duration,
    #[serde(with = "values::duration")]
    max_no_progress: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

/// `[polling]`: [`PollingConfig`] as written in a file.
#[derive(Serialize, Deserialize)]
#[serde(remote = "PollingConfig", deny_unknown_fields)]
struct PollingDef {
    #[serde(with = "values::duration")]
    default_check_after: Duration,
    #[serde(with = "values::duration")]
    min_check_after: Duration,
    #[serde(with = "values::duration")]
    max_check_after: Duration,
    #[serde(with = "values::duration")]
    deadline: Duration,
}

impl Raw {
    fn of(s: &Settings) -> Raw {
        Raw {
            api: s.api.clone(),
            scheduler: RawScheduler::from(&s.scheduler),
            retry: s.retry.clone(),
            polling: s.polling,
            checkpoint: s.checkpoint.clone(),
        }
    }

    fn into_settings(self) -> Settings {
        Settings {
            api: self.api,
            scheduler: self.scheduler.into(),
            retry: self.retry,
            polling: self.polling,
            checkpoint: self.checkpoint,
            provenance: Provenance::default(),
        }
    }
}

/// The settings as a figment dictionary, keys as in the file.
pub(super) fn to_dict(s: &Settings) -> Dict {
    match Value::serialize(Raw::of(s)) {
        Ok(Value::Dict(_, d)) => d,
        // Serialising plain structs of strings and numbers into a figment value cannot fail
        // and always gives a dictionary; an empty one makes every key "not set".
        _ => Dict::new(),
    }
}

/// Where a layer came from.
enum LayerKind {
    Default,
    Preset(&'static str),
    File {
        path: PathBuf,
        text: String,
    },
    /// Key → the variable that set it.
    Env(BTreeMap<String, String>),
    Explicit(Origin),
}

impl LayerKind {
    fn origin(&self, key: &str) -> Origin {
        match self {
            LayerKind::Default => Origin::Default,
            LayerKind::Preset(name) => Origin::Preset((*name).to_string()),
            LayerKind::File { path, text } => Origin::File {
                path: path.clone(),
                line: line_of(text, key),
            },
            LayerKind::Env(vars) => {
                Origin::Env(vars.get(key).cloned().unwrap_or_else(|| keys::env_var(key)))
            }
            LayerKind::Explicit(o) => o.clone(),
        }
    }
}

struct Layer {
    kind: LayerKind,
    dict: Dict,
}

/// A layer handed to figment under a name that maps back to it.
struct LayerProvider<'a> {
    name: String,
    dict: &'a Dict,
}

impl Provider for LayerProvider<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

fn layer_name(i: usize) -> String {
    format!("chunkwise settings layer {i}")
}

/// The 1-based line of `key` (dotted) in a TOML text, if it is there.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut parts = key.split('.');
    let first = parts.next()?;
    let (k, mut item) = doc.as_table().get_key_value(first)?;
    // Keys inside inline tables carry no span; their table's key is the closest line.
    let mut span = k.span().or_else(|| item.span());
    for part in parts {
        let (k, next) = item.as_table_like()?.get_key_value(part)?;
        span = k.span().or_else(|| next.span()).or(span);
        item = next;
    }
    Some(text.get(..span?.start)?.matches('\n').count() + 1)
}

/// A value written in a variable or `set()` call: an integer, a float, a boolean or text.
fn scalar(s: &str) -> Value {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return n.into();
    }
    if let Ok(n) = t.parse::<i64>() {
        return n.into();
    }
    let numeric = t.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
    if numeric && !t.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        if let Ok(f) = t.parse::<f64>() {
            return f.into();
        }
    }
    match t.to_ascii_lowercase().as_str() {
        "true" => true.into(),
        "false" => false.into(),
        _ => s.to_string().into(),
    }
}

/// Inserts `value` at the dotted `key`.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    if let Value::Dict(_, nested) = figment::util::nest(key, value) {
        for (k, v) in nested {
            match (dict.get_mut(&k), v) {
                (Some(Value::Dict(_, existing)), Value::Dict(_, new)) => existing.extend(new),
                (_, v) => {
                    dict.insert(k, v);
                }
            }
        }
    }
}

/// A number as written in TOML: integers bare, floats with a decimal point.
pub(super) fn num_text(n: &figment::value::Num) -> String {
    match (n.to_u128(), n.to_i128(), n.to_f64()) {
        (Some(u), _, _) => u.to_string(),
        (None, Some(i), _) => i.to_string(),
        (None, None, Some(f)) => format!("{f:?}"),
        (None, None, None) => "(a number)".into(),
    }
}

/// A value as a person reads it in a message: strings quoted, numbers and booleans bare.
pub(super) fn show_value(v: &Value) -> String {
    match v {
        Value::String(_, s) => format!("{:?}", values::redact_url(s)),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => num_text(n),
        Value::Empty(..) => "(empty)".into(),
        Value::Dict(..) => "(a table)".into(),
        Value::Array(..) => "(an array)".into(),
    }
}

/// Whether a key name looks like it tries to hold a credential.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "secret",
        "token",
        "password",
        "bearer",
        "credential",
        "api_key",
        "consumer_key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// What to say about an unknown key.
fn unknown_key_message(path: &str) -> String {
    let mut msg = "unknown key".to_string();
    if looks_secret(path) {
        msg.push_str(
            "; credentials are never settings: set X_API_KEY, X_API_SECRET, X_ACCESS_TOKEN and \
             X_ACCESS_TOKEN_SECRET (or X_BEARER_TOKEN) in the environment",
        );
    }
    let suggestion = if path.contains('.') {
        closest(path, KEYS.iter().map(|k| k.name))
    } else {
        closest(path, SECTIONS)
    };
    match suggestion {
        Some(s) => msg.push_str(&format!("; did you mean {s}?")),
        None if !path.contains('.') => {
            msg.push_str(&format!("; sections are {}", SECTIONS.join(", ")))
        }
        None => {}
    }
    msg
}

/// Every key of `dict` (under `prefix`) that is not a setting.
fn unknown_keys(dict: &Dict, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in dict {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if keys::key(&path).is_some() {
            continue;
        }
        match v {
            Value::Dict(_, d) if prefix.is_empty() && SECTIONS.contains(&path.as_str()) => {
                unknown_keys(d, &path, out)
            }
            // A section that is not a table is a value of the wrong type, reported as such.
            _ if prefix.is_empty() && SECTIONS.contains(&path.as_str()) => {}
            _ => out.push(path),
        }
    }
}

/// The environment layer, and problems with variable names.
fn env_layer(vars: Vec<(String, String)>, problems: &mut Vec<Problem>) -> Layer {
    let mut dict = Dict::new();
    let mut names = BTreeMap::new();
    for (name, value) in vars {
        let Some(rest) = name
            .get(..ENV_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
            .and_then(|_| name.get(ENV_PREFIX.len()..))
        else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let section = SECTIONS
            .iter()
            .find(|s| lower.starts_with(&format!("{s}_")));
        let key = match section {
            // Not a settings variable (`CHUNKWISE_CONFIG`, `CHUNKWISE_TRACES`): ignored,
            // unless it has the section separator and so was meant as one.
            None if !lower.contains("__") => continue,
            None => None,
            Some(s) => lower[s.len()..]
                .strip_prefix("__")
                .filter(|f| !f.is_empty() && !f.contains("__"))
                .map(|f| format!("{s}.{f}")),
        };
        match key {
            Some(key) => {
                insert(&mut dict, &key, scalar(&value));
                names.insert(key, name);
            }
            None => {
                let mut message = format!(
                    "not a settings variable: settings variables are \
                     {ENV_PREFIX}<SECTION>__<KEY>, sections {}",
                    SECTIONS.join(", ")
                );
                if looks_secret(&name) {
                    message.push_str(&format!("; {}", unknown_key_message("credential")));
                }
                let env_names: Vec<String> = KEYS.iter().map(|k| k.env_var()).collect();
                if let Some(s) = closest(
                    &name.to_ascii_uppercase(),
                    env_names.iter().map(String::as_str),
                ) {
                    message.push_str(&format!("; did you mean {s}?"));
                }
                problems.push(Problem {
                    key: name.clone(),
                    value: None,
                    origin: Origin::Env(name),
                    message,
                });
            }
        }
    }
    Layer {
        kind: LayerKind::Env(names),
        dict,
    }
}

/// The file layer, or the problem reading or parsing it.
///
/// Special files (a FIFO, `/dev/zero`) are refused before they are opened, and at most
/// [`MAX_SETTINGS_FILE_BYTES`] are read.
fn file_layer(path: PathBuf) -> Result<Layer, Problem> {
    let problem = |message| file_problem(&path, None, message);
    let data = read_regular_capped(&path, MAX_SETTINGS_FILE_BYTES).map_err(|e| match e {
        CappedReadError::NotRegular => problem(
            "cannot read the settings file: it is not a regular file (a pipe, a device or a \
             directory); give the path of a TOML file"
                .into(),
        ),
        CappedReadError::Io(e) => problem(format!("cannot read the settings file: {e}")),
    })?;
    if data.len() as u64 > MAX_SETTINGS_FILE_BYTES {
        return Err(problem(format!(
            "the settings file is larger than {}, far more than any settings file needs; is \
             it the right file?",
            values::format_size(MAX_SETTINGS_FILE_BYTES)
        )));
    }
    let text = String::from_utf8(data).map_err(|e| {
        problem(format!(
            "the settings file is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    text_layer(path, text)
}

/// A problem with the settings file as a whole.
fn file_problem(path: &Path, line: Option<usize>, message: String) -> Problem {
    Problem {
        key: "file".into(),
        value: None,
        origin: Origin::File {
            path: path.to_path_buf(),
            line,
        },
        message,
    }
}

/// The file layer of `text`, read from `path`, or the problem parsing it.
fn text_layer(path: PathBuf, text: String) -> Result<Layer, Problem> {
    let problem = |line, message| file_problem(&path, line, message);
    if let Err(e) = toml_edit::ImDocument::parse(text.as_str()) {
        let line = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map(|t| t.matches('\n').count() + 1);
        return Err(problem(
            line,
            format!("not valid TOML: {}", e.message().trim()),
        ));
    }
    let dict = Toml::string(&text)
        .data()
        .map_err(|e| problem(None, format!("not valid TOML: {e}")))?
        .remove(&Profile::Default)
        .unwrap_or_default();
    Ok(Layer {
        kind: LayerKind::File { path, text },
        dict,
    })
}

/// The preset layer, or the problem with its name.
fn preset_layer(name: &str, origin: Origin) -> Result<Layer, Problem> {
    let unknown = || {
        let names: Vec<&str> = presets::PRESETS.iter().map(|p| p.name).collect();
        let mut message = format!("unknown preset; presets are {}", names.join(", "));
        if let Some(s) = closest(&name.to_ascii_lowercase(), names.iter().copied()) {
            message.push_str(&format!("; did you mean {s}?"));
        }
        Problem {
            key: "preset".into(),
            value: Some(format!("{name:?}")),
            origin: origin.clone(),
            message,
        }
    };
    let preset = presets::preset(name).ok_or_else(unknown)?;
    let dict = Toml::string(preset.toml)
        .data()
        .map_err(|e| Problem {
            message: format!("the built-in preset does not parse: {e}"),
            ..unknown()
        })?
        .remove(&Profile::Default)
        .unwrap_or_default();
    Ok(Layer {
        kind: LayerKind::Preset(preset.name),
        dict,
    })
}

/// Builds the settings: see [`SettingsBuilder::resolve`].
pub(super) fn resolve(b: SettingsBuilder) -> Result<Settings, Problems> {
    let mut problems = Vec::new();
    let mut layers = vec![Layer {
        kind: LayerKind::Default,
        dict: to_dict(&Settings::default()),
    }];
    if let Some((name, origin)) = &b.preset {
        match preset_layer(name, origin.clone()) {
            Ok(l) => layers.push(l),
            Err(p) => problems.push(p),
        }
    }
    if let Some(path) = b.file {
        let layer = match b.file_text {
            Some(text) => text_layer(path, text),
            None => file_layer(path),
        };
        match layer {
            Ok(l) => layers.push(l),
            Err(p) => problems.push(p),
        }
    }
    let env = match b.env {
        EnvSource::Off => None,
        EnvSource::Process => Some(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        ),
        EnvSource::Vars(vars) => Some(vars),
    };
    if let Some(vars) = env {
        layers.push(env_layer(vars, &mut problems));
    }
    for (key, value, origin) in b.strings {
        let mut dict = Dict::new();
        insert(&mut dict, &key, scalar(&value));
        layers.push(Layer {
            kind: LayerKind::Explicit(origin),
            dict,
        });
    }

    // Unknown keys are reported and left out, so the rest is still checked in this run.
    for layer in &mut layers[1..] {
        let mut unknown = Vec::new();
        unknown_keys(&layer.dict, "", &mut unknown);
        for path in unknown {
            remove_path(&mut layer.dict, &path);
            problems.push(Problem {
                message: unknown_key_message(&path),
                origin: layer.kind.origin(&path),
                value: None,
                key: path,
            });
        }
    }

    // serde stops at the first value of a wrong type or form; each such key is reported,
    // taken out of every layer (so it falls back to its default) and the extraction run
    // again, until it succeeds: every problem in one run. Each round removes a key, so
    // there are at most as many rounds as keys.
    let (figment, raw) = loop {
        let figment = merged(&layers);
        let errors = match figment.extract::<Raw>() {
            Ok(raw) => break (figment, raw),
            Err(errors) => errors,
        };
        let mut removed = false;
        for e in errors {
            let key = e.path.join(".");
            problems.push(Problem {
                value: figment.find_value(&key).ok().map(|v| show_value(&v)),
                origin: layer_of(&layers, e.metadata.as_ref())
                    .map_or(Origin::Default, |l| l.origin(&key)),
                message: if SECTIONS.contains(&key.as_str()) {
                    format!("a section must be a table of keys ([{key}] and its keys below)")
                } else {
                    e.kind.to_string()
                },
                key: key.clone(),
            });
            for layer in &mut layers[1..] {
                removed |= !key.is_empty() && remove_path(&mut layer.dict, &key);
            }
        }
        if !removed {
            return Err(Problems(problems));
        }
    };
    let mut settings = raw.into_settings();
    for key in KEYS {
        let origin = layer_of(&layers, figment.find_metadata(key.name))
            .map_or(Origin::Default, |l| l.origin(key.name));
        settings.provenance.set(key.name, origin);
    }
    for o in b.typed {
        (o.apply)(&mut settings);
        settings.provenance.set(o.key, o.origin);
    }

    super::validate::fit_unpinned_chunks(&mut settings);
    problems.extend(super::validate::problems(&settings));
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(Problems(problems))
    }
}

/// The layers merged by figment, each under a name that maps back to it ([`layer_of`]).
fn merged(layers: &[Layer]) -> Figment {
    layers.iter().enumerate().fold(Figment::new(), |f, (i, l)| {
        f.merge(LayerProvider {
            name: layer_name(i),
            dict: &l.dict,
        })
    })
}

/// The layer a figment value came from.
fn layer_of<'a>(layers: &'a [Layer], m: Option<&Metadata>) -> Option<&'a LayerKind> {
    m.and_then(|m| (0..layers.len()).find(|i| m.name == layer_name(*i)))
        .map(|i| &layers[i].kind)
}

/// Removes the dotted `path` (`section.key`, or a top-level name) from `dict`; whether it
/// was there.
fn remove_path(dict: &mut Dict, path: &str) -> bool {
    match path.split_once('.') {
        None => dict.remove(path).is_some(),
        Some((section, rest)) => match dict.get_mut(section) {
            Some(Value::Dict(_, nested)) => remove_path(nested, rest),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_for_tables_dotted_and_inline_keys() {
        let text = "# comment\npolling = { deadline = \"1m\" }\n[api]\nversion = \"v2\"\n\n\
                    [scheduler]\nmin_chunk = 1\nretry.max_attempts = 3\n";
        assert_eq!(line_of(text, "polling.deadline"), Some(2));
        assert_eq!(line_of(text, "api.version"), Some(4));
        assert_eq!(line_of(text, "scheduler.min_chunk"), Some(7));
        assert_eq!(line_of(text, "scheduler.retry.max_attempts"), Some(8));
        assert_eq!(line_of(text, "api.base_url"), None);
        assert_eq!(line_of("not toml [", "api.version"), None);
    }

    #[test]
    fn scalars_are_typed_like_toml() {
        assert_eq!(scalar("4"), Value::from(4u64));
        assert_eq!(scalar("-4"), Value::from(-4i64));
        assert_eq!(scalar("0.1"), Value::from(0.1f64));
        assert_eq!(scalar("TRUE"), Value::from(true));
        assert_eq!(scalar("4MiB"), Value::from("4MiB".to_string()));
        assert_eq!(scalar("nan"), Value::from("nan".to_string()));
        assert_eq!(scalar("1e3"), Value::from(1000.0f64));
    }
}
