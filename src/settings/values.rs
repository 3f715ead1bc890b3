//! How setting values are written: sizes with units, durations with units, `auto` and `off`
//! modes, and rates such as `1 MiB/s`. Each submodule is a `#[serde(with = ...)]` pair.
//!
//! The visitors accept what a TOML file, an environment variable or a builder call produce:
//! a size may be an integer (bytes) or a string with a unit, so `CHUNKWISE_API__MAX_APPEND_BYTES=
//! 5242880` and `max_append_bytes = "5 MiB"` both work. Serialisation writes the form a person
//! would type, which parses back to the same value (the `config show` output is a valid file).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

use crate::limits::MIB;

/// Bytes in a KiB.
const KIB: u64 = 1024;

/// A byte count as a person writes it: `4 MiB`, `512 KiB`, or plain bytes.
pub(crate) fn format_size(bytes: u64) -> String {
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// Parses a size: plain bytes or a number with a unit (`4MiB`, `512 KiB`, `5MB`, `100 B`).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s.trim())
        .map_err(|e| format!("{s:?} is not a size ({e}); write bytes or a unit: \"4 MiB\""))
}

/// Parses a duration with a unit (`30s`, `500ms`, `1m 30s`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write a unit: \"30s\", \"500ms\""))
}

/// A duration as a person writes it (`30s`, `1m 30s`, `500ms`).
pub(crate) fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Whether `s` spells the given keyword, ignoring case and surrounding space.
fn is_word(s: &str, words: &[&str]) -> bool {
    words.iter().any(|w| s.trim().eq_ignore_ascii_case(w))
}

/// What a scalar setting was written as, before it is interpreted.
enum Scalar<'a> {
    Int(u64),
    Str(&'a str),
}

/// A visitor that hands integers and strings to `f`, and rejects everything else with
/// `expecting`.
struct ScalarVisitor<F> {
    expecting: &'static str,
    f: F,
}

impl<'de, T, F> Visitor<'de> for ScalarVisitor<F>
where
    F: FnOnce(Scalar<'_>) -> Result<T, String>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.f)(Scalar::Int(v)).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("{v} is negative"))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.f)(Scalar::Str(v)).map_err(E::custom)
    }
}

fn scalar<'de, D, T>(
    d: D,
    expecting: &'static str,
    f: impl FnOnce(Scalar<'_>) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_any(ScalarVisitor { expecting, f })
}

fn size_of(s: Scalar<'_>) -> Result<u64, String> {
    match s {
        Scalar::Int(n) => Ok(n),
        Scalar::Str(s) => parse_size(s),
    }
}

fn duration_of(s: Scalar<'_>) -> Result<Duration, String> {
    match s {
        Scalar::Int(n) => Err(format!(
            "{n} has no unit; write a duration such as \"{n}s\" or \"{n}ms\""
        )),
        Scalar::Str(s) => parse_duration(s),
    }
}

/// Writes a size as a string with a unit when it is a whole number of KiB, else as bytes.
fn serialize_size<S: Serializer>(bytes: u64, s: S) -> Result<S::Ok, S::Error> {
    if bytes >= KIB && bytes % KIB == 0 {
        s.serialize_str(&format_size(bytes))
    } else {
        s.serialize_u64(bytes)
    }
}

/// A byte size: an integer (bytes) or a string with a unit.
pub(crate) mod size {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        serialize_size(*v, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        scalar(d, "a size: bytes or a string such as \"4 MiB\"", size_of)
    }
}

/// A duration: a string with a unit.
pub(crate) mod duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        scalar(d, "a duration such as \"30s\"", duration_of)
    }
}

/// Writes an optional duration, `none` standing for `None`.
fn serialize_opt_duration<S: Serializer>(
    v: &Option<Duration>,
    s: S,
    none: &str,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_str(none),
    }
}

/// Reads an optional duration, any of `none` standing for `None`.
fn deserialize_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
    none: &'static [&'static str],
) -> Result<Option<Duration>, D::Error> {
    scalar(d, expecting, |v| match v {
        Scalar::Str(s) if is_word(s, none) => Ok(None),
        v => duration_of(v).map(Some),
    })
}

/// An optional duration: a duration, or `"off"` for none.
pub(crate) mod duration_or_off {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        serialize_opt_duration(v, s, "off")
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserialize_opt_duration(
            d,
            "a duration such as \"30s\", or \"off\"",
            &["off", "none"],
        )
    }
}

/// An optional duration: a duration, or `"auto"` (none: the strategy decides).
pub(crate) mod duration_or_auto {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        serialize_opt_duration(v, s, "auto")
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserialize_opt_duration(d, "a duration such as \"60s\", or \"auto\"", &["auto"])
    }
}

/// [`ChunkMode`](crate::scheduler::ChunkMode): `"auto"` or a size.
pub(crate) mod chunk_mode {
    use super::*;
    use crate::scheduler::ChunkMode;

    pub(crate) fn serialize<S: Serializer>(v: &ChunkMode, s: S) -> Result<S::Ok, S::Error> {
        match v {
            ChunkMode::Auto => s.serialize_str("auto"),
            ChunkMode::Fixed(bytes) => serialize_size(*bytes, s),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChunkMode, D::Error> {
        scalar(d, "\"auto\" or a size such as \"4 MiB\"", |v| match v {
            Scalar::Str(s) if is_word(s, &["auto"]) => Ok(ChunkMode::Auto),
            v => size_of(v).map(ChunkMode::Fixed),
        })
    }
}

/// [`ParallelismMode`](crate::scheduler::ParallelismMode): `"auto"` or a count.
pub(crate) mod parallelism_mode {
    use super::*;
    use crate::scheduler::ParallelismMode;

    pub(crate) fn serialize<S: Serializer>(v: &ParallelismMode, s: S) -> Result<S::Ok, S::Error> {
        match v {
            ParallelismMode::Auto => s.serialize_str("auto"),
            ParallelismMode::Fixed(n) => s.serialize_u64(*n as u64),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ParallelismMode, D::Error> {
        scalar(d, "\"auto\" or a number of APPENDs", |v| {
            let n = match v {
                Scalar::Str(s) if is_word(s, &["auto"]) => return Ok(ParallelismMode::Auto),
                Scalar::Str(s) => s
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{s:?} is neither \"auto\" nor a whole number"))?,
                Scalar::Int(n) => n,
            };
            usize::try_from(n)
                .map(ParallelismMode::Fixed)
                .map_err(|_| format!("{n} is too large"))
        })
    }
}

/// Optional [`RateCap`](crate::scheduler::RateCap)s: `"off"` or `AMOUNT/PERIOD`, such as
/// `"1 MiB/s"` (bytes, [`byte_rate`]) or `"900/15m"` (requests, [`request_rate`]). The period
/// is a unit (`s`, `min`, `h`) or a duration (`15m`, `500ms`). Caps are strictly paced
/// (burst 0).
pub(crate) mod rate {
    use super::*;
    use crate::scheduler::RateCap;

    /// Parses `AMOUNT/PERIOD` with `amount` reading the left side.
    pub(crate) fn parse(
        s: &str,
        amount: impl FnOnce(&str) -> Result<u64, String>,
    ) -> Result<Option<RateCap>, String> {
        if is_word(s, &["off", "none"]) {
            return Ok(None);
        }
        let (left, right) = s.rsplit_once('/').ok_or_else(|| {
            format!("{s:?} is not a rate; write AMOUNT/PERIOD such as \"1 MiB/s\", or \"off\"")
        })?;
        let right = right.trim();
        let per = if right.starts_with(|c: char| c.is_ascii_digit()) {
            parse_duration(right)?
        } else {
            parse_duration(&format!("1{right}"))?
        };
        Ok(Some(RateCap::new(amount(left)?, per)))
    }

    /// Writes a cap as `AMOUNT/PERIOD`, with `amount` writing the left side.
    pub(crate) fn format(cap: &RateCap, amount: impl FnOnce(u64) -> String) -> String {
        let per = match cap.per.as_secs() {
            1 if cap.per.subsec_nanos() == 0 => "s".to_string(),
            60 if cap.per.subsec_nanos() == 0 => "min".to_string(),
            3600 if cap.per.subsec_nanos() == 0 => "h".to_string(),
            _ => format_duration(cap.per),
        };
        format!("{}/{per}", amount(cap.amount))
    }

    fn serialize_with<S: Serializer>(
        v: &Option<RateCap>,
        s: S,
        amount: impl FnOnce(u64) -> String,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(cap) => s.serialize_str(&format(cap, amount)),
            None => s.serialize_str("off"),
        }
    }

    fn deserialize_with<'de, D: Deserializer<'de>>(
        d: D,
        amount: fn(&str) -> Result<u64, String>,
    ) -> Result<Option<RateCap>, D::Error> {
        scalar(d, "a rate such as \"1 MiB/s\", or \"off\"", |v| match v {
            Scalar::Str(s) => parse(s, amount),
            Scalar::Int(n) => Err(format!(
                "{n} has no period; write a rate such as \"{n}/s\" or \"off\""
            )),
        })
    }

    /// Bytes per period: `"1 MiB/s"`.
    pub(crate) mod byte_rate {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<RateCap>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            serialize_with(v, s, format_size)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<RateCap>, D::Error> {
            deserialize_with(d, parse_size)
        }
    }

    /// Requests per period: `"900/15m"`.
    pub(crate) mod request_rate {
        use super::*;

        fn count(s: &str) -> Result<u64, String> {
            s.trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a whole number of requests"))
        }

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<RateCap>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            serialize_with(v, s, |n| n.to_string())
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<RateCap>, D::Error> {
            deserialize_with(d, count)
        }
    }
}

/// [`ApiVersion`](crate::protocol::ApiVersion): `"v1.1"` (or `"v1"`) or `"v2"`.
pub(crate) mod api_version {
    use super::*;
    use crate::protocol::ApiVersion;

    pub(crate) fn serialize<S: Serializer>(v: &ApiVersion, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ApiVersion, D::Error> {
        scalar(d, "\"v1.1\" or \"v2\"", |v| match v {
            Scalar::Str(s) => s.parse().map_err(|e| format!("{e}")),
            Scalar::Int(2) => Ok(ApiVersion::V2),
            Scalar::Int(n) => Err(format!("{n} is not an API version; expected v1.1 or v2")),
        })
    }
}

/// A one-shot mode: `"auto"`, `"never"` or `"always"`.
pub(crate) mod one_shot {
    use super::*;
    use crate::engine::OneShotMode;

    pub(crate) fn serialize<S: Serializer>(v: &OneShotMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OneShotMode, D::Error> {
        scalar(d, "\"auto\", \"never\" or \"always\"", |v| match v {
            Scalar::Str(s) => s.parse().map_err(|_| {
                format!("{s:?} is not a one-shot mode; expected auto, never or always")
            }),
            Scalar::Int(n) => Err(format!(
                "{n} is not a one-shot mode; expected auto, never or always"
            )),
        })
    }
}

/// An optional base URL (absent: the API version's default).
pub(crate) mod base_url {
    use super::*;
    use url::Url;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(u) => s.serialize_str(u.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
        scalar(d, "a URL such as \"https://api.x.com\"", |v| match v {
            Scalar::Str(s) if is_word(s, &["default"]) => Ok(None),
            Scalar::Str(s) => Url::parse(s.trim())
                .map(Some)
                .map_err(|e| format!("{:?} is not a URL ({e})", super::redact_url(s))),
            Scalar::Int(n) => Err(format!("{n} is not a URL")),
        })
    }
}

/// A directory: a string, with a leading `~/` expanded to the home directory.
pub(crate) mod dir {
    use super::*;
    use std::path::PathBuf;

    pub(crate) fn serialize<S: Serializer>(v: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string_lossy())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        scalar(d, "a directory path", |v| match v {
            Scalar::Str(s) => Ok(expand_home(s)),
            Scalar::Int(n) => Err(format!("{n} is not a path")),
        })
    }

    /// `~/x` is the home directory's `x` (when there is a home directory).
    pub(crate) fn expand_home(s: &str) -> PathBuf {
        match (s.strip_prefix("~/"), dirs::home_dir()) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(s),
        }
    }
}

/// `s` with any user name and password of a URL replaced by `***`, so a mistyped base URL
/// never echoes a secret into an error.
pub(crate) fn redact_url(s: &str) -> String {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => s.to_string(),
            }
        }
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RateCap;

    #[test]
    fn sizes_parse_with_and_without_units_and_format_back() {
        assert_eq!(parse_size("4MiB"), Ok(4 * MIB));
        assert_eq!(parse_size("512 KiB"), Ok(512 * KIB));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("four").is_err());
        for n in [1, 1000, KIB, 3 * KIB, MIB, 5 * MIB, 5 * MIB + 1] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(4 * MIB), "4 MiB");
        assert_eq!(format_size(1536), "1536 B");
    }

    #[test]
    fn durations_need_units_and_round_trip() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("30").is_err());
        let d = Duration::from_millis(90_250);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn rates_parse_units_and_periods() {
        let p = |s| rate::parse(s, parse_size);
        assert_eq!(p("1 MiB/s"), Ok(Some(RateCap::per_second(MIB))));
        assert_eq!(
            p("900/15m"),
            Ok(Some(RateCap::new(900, Duration::from_secs(900))))
        );
        assert_eq!(
            p("10 KiB/min"),
            Ok(Some(RateCap::new(10 * KIB, Duration::from_secs(60))))
        );
        assert_eq!(p("off"), Ok(None));
        assert!(p("1 MiB").is_err());
        assert!(p("1 MiB/fortnight").is_err());
        let cap = RateCap::new(900, Duration::from_secs(900));
        assert_eq!(rate::format(&cap, |n| n.to_string()), "900/15m");
        assert_eq!(
            rate::format(&RateCap::per_second(MIB), format_size),
            "1 MiB/s"
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://user:hunter2@api.x.com/a@b"),
            "https://***@api.x.com/a@b"
        );
        assert_eq!(redact_url("https://api.x.com"), "https://api.x.com");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
