//! Named presets: partial settings for common situations, written in the file format itself.
//!
//! A preset sits between the defaults and the file in the precedence (defaults < preset < file
//! < environment < explicit), so a file or a flag can still change anything a preset sets.
//! Each line says what it changes and why; keys a preset does not name keep their defaults.

/// A named preset.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The name used with `--preset` and [`SettingsBuilder::preset`](super::SettingsBuilder::preset).
    pub name: &'static str,
    /// One line on when to use it.
    pub summary: &'static str,
    /// The settings it changes, in the file format, with the reason for each.
    pub toml: &'static str,
}

/// Every preset.
pub const PRESETS: &[Preset] = &[CELLULAR, WIFI, METERED, BACKGROUND];

/// The preset named `name` (ASCII case ignored).
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.trim()))
}

/// Mobile data: high and variable latency, outages and handovers.
pub const CELLULAR: Preset = Preset {
    name: "cellular",
    summary: "mobile data: smaller first chunks, low parallelism cap, patient deadlines, more retries",
    toml: r#"
[scheduler]
# The first measurement arrives within a few seconds even at 1 Mbit/s; the chunk then grows
# with the estimate. Source: adaptive-anchors.md §2.9.3 (below ~0.2 MB/s chunks should shrink
# toward 256 KiB-1 MiB).
initial_chunk = "512 KiB"
# A failure on a lossy link wastes at most this much. Source: §2.9.3's lower end.
min_chunk = "128 KiB"
# Radio links gain little from more parallel requests and other apps starve. Source: §2.9.6
# ("start at 1-2, cap low (~4-6)").
max_parallelism = 4
# Latency spikes during handovers and radio-state changes last seconds: a floor of 20 s
# instead of 10 s keeps short requests from timing out in one. Source: reasonable default.
deadline_floor = "20s"
# Handovers and tunnels stop traffic for tens of seconds without losing the connection.
# Source: Uppy's 30 s and tusd's 60 s stall timers (§2.9.5), the midpoint.
stall_timeout = "45s"

[retry]
# Outages are frequent and short: more attempts per segment ...
max_attempts = 8
# ... and a wider backoff window so retries spread over an outage.
max_delay = "10s"
# Up to one retry per segment across the upload. Source: twice the default (0.5), because a
# 20 % failure rate is normal on a bad cellular link (issue 2).
budget_ratio = 1.0
"#,
};

/// A good local network.
pub const WIFI: Preset = Preset {
    name: "wifi",
    summary: "good Wi-Fi or wired link: larger first chunks, more parallelism, quicker stall detection",
    toml: r#"
[scheduler]
# The chunk both official X samples use; on a fast link the first answers come back quickly.
# Source: protocol.md §10.
initial_chunk = "4 MiB"
# Start where the default fixed strategy runs. Source: node-twitter-api-v2's 3 (protocol.md §2.4).
initial_parallelism = 3
# Room to cover a larger bandwidth-delay product; the plateau test keeps only helpful levels.
# Source: above the mobile cap of §2.9.6, well below the datacenter defaults of §2.9.6.
max_parallelism = 8
# A healthy link never pauses this long. Source: reasonable default, below Uppy's 30 s.
stall_timeout = "20s"
"#,
};

/// A link paid by the byte (tethering, roaming, capped plans).
pub const METERED: Preset = Preset {
    name: "metered",
    summary: "paid-per-byte link: 1 MiB/s byte-rate cap, few retries, small retry budget",
    toml: r#"
[scheduler]
# Leave headroom for the user's other traffic and spread the cost over time; raise or lower it
# with scheduler.byte_rate_cap. Source: reasonable default (about 8 Mbit/s, under a typical
# LTE uplink).
byte_rate_cap = "1 MiB/s"
# Fewer parallel requests means fewer bytes lost when the link drops.
max_parallelism = 3
# A failed segment re-sends its bytes, which the user pays for.
min_chunk = "128 KiB"

[retry]
# Give up sooner on a segment that keeps failing ...
max_attempts = 4
# ... and allow retries worth at most a fifth of the segments. Source: reqwest's 20 % retry
# budget (style.md §4b).
budget_ratio = 0.2
"#,
};

/// An upload that should stay out of the way of interactive traffic.
pub const BACKGROUND: Preset = Preset {
    name: "background",
    summary: "background sync: one or two requests at a time, long backoff, slow polling",
    toml: r#"
[scheduler]
# One request at a time at first, at most two: the upload never crowds the link. Source:
# §2.9.6 (start at 1) and WorkManager-style background work (adaptive-anchors.md row 18).
initial_parallelism = 1
max_parallelism = 2

[retry]
# Wait longer between attempts: nobody is watching, and a struggling server recovers.
# Source: WorkManager's 30 s initial backoff (row 18), scaled down for a single upload.
transient_base = "1s"
throttle_base = "5s"
max_delay = "60s"

[polling]
# Check processing less often.
default_check_after = "5s"
min_check_after = "2s"
"#,
};
