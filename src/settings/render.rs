//! The effective settings as an annotated TOML file (`chunkwise config show`).

use std::fmt::Write as _;

use figment::value::{Dict, Value};

use super::keys::{KEYS, SECTIONS};
use super::load::{num_text, to_dict};
use super::{Origin, Settings};

/// Column at which origin comments start, so they line up for the usual value lengths.
const COMMENT_COLUMN: usize = 44;

/// A figment value in TOML syntax.
fn toml_value(v: &Value) -> String {
    match v {
        Value::String(_, s) => toml_edit::Value::from(s.as_str()).to_string(),
        Value::Char(_, c) => toml_edit::Value::from(c.to_string()).to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => num_text(n),
        // Settings have no empty, table or array values.
        Value::Empty(..) | Value::Dict(..) | Value::Array(..) => "\"\"".into(),
    }
}

/// What an unset optional key means.
fn unset_meaning(s: &Settings, key: &str) -> String {
    match key {
        "api.base_url" => format!(
            "not set: {} (the {} default)",
            s.api.version.default_base_url(),
            s.api.version
        ),
        "retry.seed" => "not set: drawn from the OS".into(),
        _ => "not set".into(),
    }
}

/// See [`Settings::to_toml`].
pub(super) fn to_toml(s: &Settings) -> String {
    let dict = to_dict(s);
    let mut out = String::from(
        "# chunkwise settings; precedence: default < preset < file < environment \
         (CHUNKWISE_<SECTION>__<KEY>) < explicit (flags, builder).\n\
         # The comment after each value says where it came from.\n",
    );
    for section in SECTIONS {
        let values = match dict.get(section) {
            Some(Value::Dict(_, d)) => d,
            _ => &Dict::new(),
        };
        let _ = write!(out, "\n[{section}]\n");
        for key in KEYS.iter().filter(|k| k.section() == section) {
            let origin = s.origin(key.name).cloned().unwrap_or(Origin::Default);
            let line = match values.get(key.field()) {
                Some(v) => format!("{} = {}", key.field(), toml_value(v)),
                None => format!("# {} ({})", key.field(), unset_meaning(s, key.name)),
            };
            let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
            let _ = writeln!(out, "{line}{:pad$}# {origin}", "");
        }
    }
    out
}
