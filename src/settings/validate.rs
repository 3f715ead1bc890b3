//! Checking values, and blaming the right key.
//!
//! The ranges live with the types that use them ([`AdaptiveConfig::validate`],
//! [`RetryPolicy::validate`](crate::engine::RetryPolicy::validate),
//! [`EngineConfig::validate`](crate::engine::EngineConfig::validate)); this module adds only
//! what spans sections (a chunk against the APPEND body limit, a pinned deadline against the
//! stall timeout) and what they cannot know (the base URL, the checkpoint directory).
//!
//! To name the key at fault, each key is checked on its own: the defaults with that one value
//! changed must pass every check. A key that passes alone is then checked together with the
//! keys it depends on ([`Key::depends_on`](super::Key)), so `initial_parallelism = 8` with
//! `max_parallelism = 4` is reported on `initial_parallelism`, naming both.
//!
//! [`AdaptiveConfig::validate`]: crate::scheduler::AdaptiveConfig::validate

use figment::value::{Dict, Value};

use super::keys::{self, KEYS};
use super::load::{show_value, to_dict};
use super::values::{format_duration, format_size};
use super::{ApiSettings, Origin, Problem, Settings};
use crate::engine::MAX_CONFIG_DURATION;
use crate::error::Error;
use crate::scheduler::ChunkMode;

/// The largest APPEND body a setting may ask for: 1 GiB.
///
/// Source: the adaptive controller's own ceiling for chunk settings (1 GiB); X documents 5 MB
/// (protocol.md §11.1), so anything near this is a misconfiguration.
pub const MAX_APPEND_BYTES_LIMIT: u64 = 1024 * crate::limits::MIB;

/// What is wrong with the `[api]` section, if anything.
pub(super) fn api_problem(api: &ApiSettings) -> Option<String> {
    if let Some(url) = &api.base_url {
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Some("api.base_url must be an http:// or https:// URL with a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Some(
                "api.base_url must not contain a user name or password; credentials come from \
                 the X_* environment variables"
                    .into(),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Some("api.base_url must not have a query or fragment".into());
        }
    }
    if api.max_payload() == 0 || api.max_append_bytes > MAX_APPEND_BYTES_LIMIT {
        return Some(format!(
            "api.max_append_bytes must leave room for payload and be at most {}: between 4 B \
             and {0}",
            format_size(MAX_APPEND_BYTES_LIMIT)
        ));
    }
    None
}

/// Lowers the chunk sizes nobody pinned (`scheduler.initial_chunk` and
/// `scheduler.min_chunk` at their default or a preset's value) to the APPEND payload limit
/// when `api.max_append_bytes` leaves less room than they ask for: `--max-append-bytes 1MB`
/// then works without also setting them. A value from a file, a variable or an explicit
/// setting is the user's and stays, so that a conflict is reported on that key.
pub(super) fn fit_unpinned_chunks(s: &mut Settings) {
    let payload = s.api.max_payload();
    if payload == 0 {
        return;
    }
    let a = &mut s.scheduler.adaptive;
    for (key, value) in [
        ("scheduler.initial_chunk", &mut a.initial_chunk),
        ("scheduler.min_chunk", &mut a.min_chunk),
    ] {
        let origin = s.provenance.get(key).cloned().unwrap_or(Origin::Default);
        if *value > payload && matches!(origin, Origin::Default | Origin::Preset(_)) {
            *value = payload;
            s.provenance.set(
                key,
                Origin::Explicit(format!(
                    "{origin}, lowered to the APPEND payload limit of api.max_append_bytes"
                )),
            );
        }
    }
}

/// Every check, on a whole settings value.
fn check(s: &Settings) -> Result<(), String> {
    if let Some(p) = api_problem(&s.api) {
        return Err(p);
    }
    let a = &s.scheduler.adaptive;
    let payload = s.api.max_payload();
    let limit = || {
        format!(
            "the APPEND payload limit, {} (api.max_append_bytes = {}{})",
            format_size(payload),
            format_size(s.api.max_append_bytes),
            if s.api.media_data {
                ", base64 media_data"
            } else {
                ""
            }
        )
    };
    if let ChunkMode::Fixed(n) = a.chunk {
        if n == 0 || n > payload {
            return Err(format!("allowed 1 B ..= {}", limit()));
        }
    }
    for (name, v) in [
        ("initial_chunk", a.initial_chunk),
        ("min_chunk", a.min_chunk),
    ] {
        if v > payload {
            return Err(format!("scheduler.{name} must be at most {}", limit()));
        }
    }
    if let Some(d) = s.scheduler.request_deadline {
        if d.is_zero() || d > MAX_CONFIG_DURATION {
            return Err(format!(
                "allowed above 0 and at most {}",
                format_duration(MAX_CONFIG_DURATION)
            ));
        }
        if let Some(stall) = a.stall_timeout {
            if d <= stall {
                return Err(format!(
                    "a pinned deadline must be longer than scheduler.stall_timeout ({}), or \
                     stall detection can never fire; raise it, or set the stall timeout lower \
                     or \"off\"",
                    format_duration(stall)
                ));
            }
        }
    }
    let dir = &s.checkpoint.dir;
    if dir.as_os_str().is_empty() || !dir.is_absolute() {
        return Err("checkpoint.dir must be an absolute path, or start with ~/".into());
    }
    a.validate().map_err(|e| inner_message(&e))?;
    s.engine_config().map_err(|e| inner_message(&e))?;
    Ok(())
}

/// The part of a validation error that says what is wrong, without the kind's prefix or a
/// second copy of the key and value.
fn inner_message(e: &Error) -> String {
    let text = e.to_string();
    let text = text
        .strip_prefix("invalid configuration: ")
        .unwrap_or(&text);
    match text.find(" is out of range; ") {
        Some(i) => text[i + " is ".len()..].to_string(),
        None => text.to_string(),
    }
}

/// `key`'s value as written in a file, for messages.
fn value_of(dict: &Dict, key: &str) -> Option<String> {
    let (section, field) = key.split_once('.')?;
    match dict.get(section)? {
        Value::Dict(_, d) => d.get(field).map(show_value),
        _ => None,
    }
}

/// The keys checked together with `key`: those it depends on and those that depend on it.
fn related(key: &keys::Key) -> impl Iterator<Item = &'static keys::Key> + '_ {
    KEYS.iter()
        .filter(move |k| key.depends_on.contains(&k.name) || k.depends_on.contains(&key.name))
}

/// The defaults with `keys` copied from `s` (values and origins), the unpinned chunks
/// fitted as [`fit_unpinned_chunks`] does, checked.
fn check_with(s: &Settings, keys: &[&keys::Key]) -> Result<(), String> {
    let mut candidate = Settings::default();
    for k in keys {
        (k.copy)(s, &mut candidate);
        if let Some(origin) = s.origin(k.name) {
            candidate.provenance.set(k.name, origin.clone());
        }
    }
    fit_unpinned_chunks(&mut candidate);
    check(&candidate)
}

/// Every problem with `s`, each blamed on one key.
///
/// A key is at fault alone when the defaults with its value fail, unless its related keys
/// (as set) make it valid again: `min_check_after = "2s"` fails against the default
/// `default_check_after` of 1 s but not next to a `default_check_after` of 5 s. A key valid
/// alone that fails with its related keys is a conflict, reported once, on the key that
/// depends on the others.
pub(super) fn problems(s: &Settings) -> Vec<Problem> {
    let dict = to_dict(s);
    let value = |key: &str| value_of(&dict, key).unwrap_or_else(|| "(not set)".into());
    let origin = |key: &str| s.origin(key).cloned().unwrap_or(super::Origin::Default);
    let problem = |key: &str, message: String| Problem {
        key: key.to_string(),
        value: Some(value(key)),
        origin: origin(key),
        message,
    };
    let alone: Vec<Result<(), String>> = KEYS.iter().map(|k| check_with(s, &[k])).collect();
    let alone_ok = |name: &str| {
        KEYS.iter()
            .zip(&alone)
            .any(|(k, r)| k.name == name && r.is_ok())
    };
    let mut out = Vec::new();
    for (key, alone) in KEYS.iter().zip(&alone) {
        let mut group = vec![key];
        group.extend(related(key).filter(|r| alone_ok(r.name)));
        let together = if group.len() > 1 {
            check_with(s, &group)
        } else {
            alone.clone()
        };
        let deps = |only_set: bool| -> Vec<String> {
            group[1..]
                .iter()
                .filter(|d| key.depends_on.contains(&d.name))
                .filter(|d| !only_set || origin(d.name) != super::Origin::Default)
                .map(|d| format!("{} = {} ({})", d.name, value(d.name), origin(d.name)))
                .collect()
        };
        let with = |msg: &str, deps: Vec<String>| {
            if deps.is_empty() {
                msg.to_string()
            } else {
                format!("{msg} [with {}]", deps.join(", "))
            }
        };
        match (alone, together) {
            (_, Ok(())) => {}
            // Wrong alone: name the keys it was checked against only when they were set.
            (Err(msg), Err(_)) => out.push(problem(key.name, with(msg, deps(true)))),
            // A conflict: reported on the key that depends on the others, naming them.
            (Ok(()), Err(msg)) => {
                let deps = deps(false);
                if !deps.is_empty() {
                    out.push(problem(key.name, with(&msg, deps)));
                }
            }
        }
    }
    if out.is_empty() {
        if let Err(msg) = check(s) {
            // Only a combination of keys is at fault; name the check's own words.
            out.push(Problem {
                key: "settings".into(),
                value: None,
                origin: super::Origin::Default,
                message: msg,
            });
        }
    }
    out
}
