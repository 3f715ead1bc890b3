//! Links, link profiles (an uplink and a downlink plus faults), and the built-in profiles.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::schedule::{Schedule, ScheduleError, format_rate};
use crate::limits::MIB;
use crate::{Error, ErrorKind, Result};

/// One direction of a network path: a delivery schedule, a one-way propagation delay, and a
/// bounded bottleneck queue in front of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    schedule: Schedule,
    delay: Duration,
    queue_bytes: u64,
}

impl Link {
    /// A link; a `queue_bytes` of 0 is raised to one [`MTU`](super::MTU).
    pub fn new(schedule: Schedule, delay: Duration, queue_bytes: u64) -> Link {
        Link {
            schedule,
            delay,
            queue_bytes: queue_bytes.max(super::MTU),
        }
    }

    /// A constant-rate link whose queue holds [`QUEUE_DEPTH`] worth of bytes at that rate
    /// (at least [`MIN_QUEUE_BYTES`]).
    ///
    /// # Errors
    /// [`ScheduleError`] if the rate is 0 or above [`MAX_RATE_BPS`](super::MAX_RATE_BPS).
    pub fn constant(bits_per_sec: u64, delay: Duration) -> Result<Link, ScheduleError> {
        Ok(Link::new(
            Schedule::constant(bits_per_sec)?,
            delay,
            queue_for_rate(bits_per_sec as f64),
        ))
    }

    /// The delivery schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The one-way propagation delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The bottleneck queue's capacity in bytes.
    pub fn queue_bytes(&self) -> u64 {
        self.queue_bytes
    }

    /// This link with another schedule.
    #[must_use]
    pub fn with_schedule(mut self, schedule: Schedule) -> Link {
        self.schedule = schedule;
        self
    }

    /// This link with another one-way delay.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Link {
        self.delay = delay;
        self
    }

    /// This link with another queue capacity (at least one MTU).
    #[must_use]
    pub fn with_queue_bytes(mut self, queue_bytes: u64) -> Link {
        self.queue_bytes = queue_bytes.max(super::MTU);
        self
    }

    /// The mean rate over the link's summary horizon (see [`LinkProfile::summary`]), in bit/s.
    pub fn mean_rate(&self) -> f64 {
        self.schedule
            .mean_rate(Duration::ZERO, summary_horizon(&self.schedule))
    }

    /// One-line description: rate, delay, queue.
    pub fn summary(&self) -> String {
        let horizon = summary_horizon(&self.schedule);
        let (lo, hi) = one_second_extremes(&self.schedule, horizon);
        let rate = match self.schedule.constant_rate() {
            Some(r) => format_rate(r as f64),
            _ => format!(
                "mean {} (1 s min {}, max {}) over {:.0} s",
                format_rate(self.mean_rate()),
                format_rate(lo),
                format_rate(hi),
                horizon.as_secs_f64()
            ),
        };
        let outages: String = self
            .schedule
            .outages()
            .iter()
            .map(|(s, l)| {
                format!(
                    ", outage {:.0}-{:.0} s",
                    s.as_secs_f64(),
                    (*s + *l).as_secs_f64()
                )
            })
            .collect();
        format!(
            "{rate}, {} ms one-way, queue {} KiB{outages}",
            self.delay.as_millis(),
            self.queue_bytes / 1024
        )
    }
}

/// Faults injected by the proxy on top of the links.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// Connection resets per MiB carried (both directions counted, all connections together);
    /// the distance between resets is exponentially distributed with mean `1 / resets_per_mib`
    /// MiB, drawn from the proxy's seed. 0 (the default) disables them.
    pub resets_per_mib: f64,
    /// Times (since the proxy started) at which every open connection is reset, as in a
    /// cellular handover.
    pub reset_at: Vec<Duration>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Whether any fault is configured.
    pub fn is_none(&self) -> bool {
        !self.has_reset_rate() && self.reset_at.is_empty()
    }

    /// Whether `resets_per_mib` enables resets (positive and finite; anything else, NaN
    /// included, disables them).
    pub fn has_reset_rate(&self) -> bool {
        self.resets_per_mib.is_finite() && self.resets_per_mib > 0.0
    }
}

/// A named network path: uplink (client to server, the direction an upload uses), downlink,
/// and faults. Profiles feed [`LinkProxy`](super::LinkProxy) and
/// [`ideal_time`](super::ideal_time).
///
/// ```
/// use chunkwise::link::LinkProfile;
/// let p = LinkProfile::from_name("step-20-2-20")?;
/// assert_eq!(p.rtt().as_millis(), 40);
/// assert!(LinkProfile::names().contains(&"lte"));
/// # Ok::<(), chunkwise::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinkProfile {
    name: String,
    up: Link,
    down: Link,
    faults: Faults,
}

/// Queue depth of the built-in profiles, as time at the nominal rate.
///
/// Source: cellular networks buffer deeply ("bufferbloat"; Jiang et al., *Tackling Bufferbloat
/// in 3G/4G Networks*, IMC 2012, saw RTTs of seconds under load). Half a second at the link
/// rate is a moderate choice within that range.
pub const QUEUE_DEPTH: Duration = Duration::from_millis(500);

/// The smallest queue a profile gets, in bytes.
///
/// Source: enough for a TCP initial window (10 segments, RFC 6928) plus headroom; below this a
/// slow link would drop ordinary bursts.
pub const MIN_QUEUE_BYTES: u64 = 64 * 1024;

/// The downlink rate of the built-in profiles, in bit/s.
///
/// Source: uploads only need small responses on the downlink, so it is kept generous (typical
/// LTE downlinks are several times the uplink) and never the bottleneck.
pub const GENEROUS_DOWNLINK_BPS: u64 = 50_000_000;

/// One-way delay used for a trace file, which carries no delay of its own.
///
/// Source: Mahimahi traces are usually combined with `mm-delay`; 20 ms each way (40 ms RTT)
/// is the delay of the `constant-10mbit-40ms` profile and a typical LTE figure.
pub const DEFAULT_TRACE_DELAY: Duration = Duration::from_millis(20);

/// The built-in profile names, in the order [`LinkProfile::builtins`] returns them.
pub const PROFILE_NAMES: &[&str] = &[
    "lte",
    "3g",
    "constant-10mbit-40ms",
    "constant-1mbit-150ms",
    "step-20-2-20",
    "outage-20s",
    "lossy",
    "handover",
];

/// `lte`: uplink rate per second in units of 100 kbit/s, a made-up 30 s pattern around
/// 10 Mbit/s with two deep dips (to 1 and 0.5 Mbit/s).
///
/// Source: hand-written to resemble the 1 s windows of the Saturator LTE uplink traces in
/// `shared/traces` (TMobile-LTE-short.up: median 11.5, p10 3.5 Mbit/s).
const LTE_UP_100KBIT: [u64; 30] = [
    120, 105, 90, 115, 140, 80, 30, 10, 60, 100, 125, 110, 95, 130, 150, 100, 70, 5, 40, 90, 110,
    120, 85, 105, 135, 90, 65, 100, 115, 125,
];

/// `lte` one-way delay.
///
/// Source: LTE round trips are commonly 40-70 ms; 30 ms each way gives 60 ms.
const LTE_DELAY: Duration = Duration::from_millis(30);

/// `3g`: uplink rate per second in units of 10 kbit/s, a made-up 10 s pattern around 1 Mbit/s.
///
/// Source: hand-written to resemble the UMTS/EVDO uplink traces in `shared/traces` (means of
/// 0.8-0.9 Mbit/s, 1 s windows between about 0.3 and 1.5 Mbit/s).
const THREE_G_UP_10KBIT: [u64; 10] = [120, 90, 100, 60, 110, 130, 80, 40, 100, 120];

/// `3g` and `constant-1mbit-150ms` one-way delay (150 ms RTT).
///
/// Source: the task's profile list (3G round trips of 100-200 ms are typical).
const THREE_G_DELAY: Duration = Duration::from_millis(75);

/// One-way delay of the 40 ms-RTT profiles.
///
/// Source: the profile name `constant-10mbit-40ms`.
const RTT40_DELAY: Duration = Duration::from_millis(20);

/// `lossy`: mean MiB carried between two connection resets.
///
/// Source: the task's profile list ("resets every 8 MiB on average").
const LOSSY_MIB_PER_RESET: f64 = 8.0;

/// `handover`: times at which every connection is reset.
///
/// Source: made up; a handover every 15 s or so of a drive.
const HANDOVER_TIMES_S: [u64; 3] = [10, 25, 40];

impl LinkProfile {
    /// A profile from its parts, with no faults.
    pub fn new(name: impl Into<String>, up: Link, down: Link) -> LinkProfile {
        LinkProfile {
            name: name.into(),
            up,
            down,
            faults: Faults::none(),
        }
    }

    /// This profile with `faults`.
    #[must_use]
    pub fn with_faults(mut self, faults: Faults) -> LinkProfile {
        self.faults = faults;
        self
    }

    /// This profile with another name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> LinkProfile {
        self.name = name.into();
        self
    }

    /// This profile with another uplink.
    #[must_use]
    pub fn with_up(mut self, up: Link) -> LinkProfile {
        self.up = up;
        self
    }

    /// This profile with another downlink.
    #[must_use]
    pub fn with_down(mut self, down: Link) -> LinkProfile {
        self.down = down;
        self
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The uplink (client to server).
    pub fn up(&self) -> &Link {
        &self.up
    }

    /// The downlink (server to client).
    pub fn down(&self) -> &Link {
        &self.down
    }

    /// The faults.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The round-trip propagation delay (uplink delay + downlink delay), queueing excluded.
    pub fn rtt(&self) -> Duration {
        self.up.delay + self.down.delay
    }

    /// The built-in profile names.
    pub fn names() -> &'static [&'static str] {
        PROFILE_NAMES
    }

    /// Every built-in profile.
    pub fn builtins() -> Vec<LinkProfile> {
        PROFILE_NAMES
            .iter()
            .filter_map(|n| builtin(n).ok())
            .collect()
    }

    /// A built-in profile by name (case-insensitive):
    ///
    /// | name | uplink | one-way delay | faults |
    /// |---|---|---|---|
    /// | `lte` | 1 s steps around 10 Mbit/s with dips to 1 and 0.5 Mbit/s, 30 s loop | 30 ms | - |
    /// | `3g` | 1 s steps around 1 Mbit/s (0.4-1.3), 10 s loop | 75 ms | - |
    /// | `constant-10mbit-40ms` | 10 Mbit/s | 20 ms | - |
    /// | `constant-1mbit-150ms` | 1 Mbit/s | 75 ms | - |
    /// | `step-20-2-20` | 20 Mbit/s 10 s, 2 Mbit/s 20 s, 20 Mbit/s 30 s, 60 s loop | 20 ms | - |
    /// | `outage-20s` | 10 Mbit/s, nothing in (10 s, 30 s] (both directions) | 20 ms | - |
    /// | `lossy` | 10 Mbit/s | 20 ms | a reset every 8 MiB on average |
    /// | `handover` | 10 Mbit/s | 20 ms | every connection reset at 10, 25, 40 s |
    ///
    /// Downlinks are a constant [`GENEROUS_DOWNLINK_BPS`] with the same delay. Queues hold
    /// [`QUEUE_DEPTH`] at the nominal rate.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] naming the known profiles.
    pub fn from_name(name: &str) -> Result<LinkProfile> {
        builtin(&name.to_ascii_lowercase())
    }

    /// A profile from a Mahimahi uplink trace file, with [`DEFAULT_TRACE_DELAY`] each way and a
    /// queue of [`QUEUE_DEPTH`] at the trace's mean rate. If the path ends in `.up` and a
    /// sibling `.down` file exists, it is the downlink; otherwise the downlink is a constant
    /// [`GENEROUS_DOWNLINK_BPS`]. The profile is named after the file.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if a file cannot be read, [`ErrorKind::InvalidConfig`] if it is not a
    /// valid trace.
    pub async fn from_trace_file(path: impl AsRef<Path>) -> Result<LinkProfile> {
        let path = path.as_ref();
        let up = trace_link(Schedule::from_mahimahi_file(path).await?);
        let down_path = path
            .to_str()
            .and_then(|p| p.strip_suffix(".up"))
            .map(|stem| format!("{stem}.down"));
        let down = match down_path {
            Some(p) if tokio::fs::try_exists(&p).await.unwrap_or(false) => {
                trace_link(Schedule::from_mahimahi_file(&p).await?)
            }
            _ => generous_down(DEFAULT_TRACE_DELAY)?,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(LinkProfile::new(name, up, down))
    }

    /// A built-in name, or else a path to a Mahimahi trace file (see
    /// [`LinkProfile::from_trace_file`]). This is what a `--link` option takes.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] if `spec` is neither a built-in name nor an existing file.
    pub async fn resolve(spec: &str) -> Result<LinkProfile> {
        match LinkProfile::from_name(spec) {
            Ok(p) => Ok(p),
            Err(e) => {
                if tokio::fs::try_exists(spec).await.unwrap_or(false) {
                    LinkProfile::from_trace_file(spec).await
                } else {
                    Err(e)
                }
            }
        }
    }

    /// One line describing the profile, for `chunkwise bench` / `demo` output:
    /// name, uplink, downlink, faults. Variable schedules show their mean and the minimum and
    /// maximum 1 s rate over one loop (or up to the end of the last outage, whichever is
    /// longer, at most one hour).
    pub fn summary(&self) -> String {
        let mut faults = String::new();
        if self.faults.has_reset_rate() {
            faults.push_str(&format!(
                "; a reset every {:.1} MiB on average",
                1.0 / self.faults.resets_per_mib
            ));
        }
        if !self.faults.reset_at.is_empty() {
            let at: Vec<String> = self
                .faults
                .reset_at
                .iter()
                .map(|t| format!("{:.0}", t.as_secs_f64()))
                .collect();
            faults.push_str(&format!("; all connections reset at {} s", at.join(", ")));
        }
        format!(
            "{}: up {}; down {}{faults}",
            self.name,
            self.up.summary(),
            self.down.summary()
        )
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// The queue size for a nominal rate: [`QUEUE_DEPTH`] of it, at least [`MIN_QUEUE_BYTES`].
fn queue_for_rate(bits_per_sec: f64) -> u64 {
    let bytes = bits_per_sec / 8.0 * QUEUE_DEPTH.as_secs_f64();
    // A float-to-int `as` cast saturates, so this cannot wrap.
    (bytes as u64).max(MIN_QUEUE_BYTES)
}

fn summary_horizon(schedule: &Schedule) -> Duration {
    const MAX_HORIZON: Duration = Duration::from_secs(3600);
    let period = schedule.period().unwrap_or(Duration::from_secs(1));
    let outage_end = schedule
        .outages()
        .iter()
        .map(|(s, l)| *s + *l)
        .max()
        .unwrap_or(Duration::ZERO);
    let secs = period.max(outage_end).as_secs_f64().ceil().max(1.0);
    Duration::from_secs_f64(secs).min(MAX_HORIZON)
}

fn one_second_extremes(schedule: &Schedule, horizon: Duration) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for k in 0..horizon.as_secs().max(1) {
        let r = schedule.mean_rate(Duration::from_secs(k), Duration::from_secs(1));
        lo = lo.min(r);
        hi = hi.max(r);
    }
    (if lo.is_finite() { lo } else { 0.0 }, hi)
}

fn trace_link(schedule: Schedule) -> Link {
    let mean = schedule.mean_rate(Duration::ZERO, summary_horizon(&schedule));
    Link::new(schedule, DEFAULT_TRACE_DELAY, queue_for_rate(mean))
}

fn generous_down(delay: Duration) -> Result<Link> {
    Ok(Link::constant(GENEROUS_DOWNLINK_BPS, delay)?)
}

fn per_second(values: &[u64], unit_bps: u64) -> Result<Schedule> {
    Ok(Schedule::steps(
        values
            .iter()
            .map(|&v| (Duration::from_secs(1), v * unit_bps)),
    )?)
}

fn constant_profile(name: &str, bits_per_sec: u64, delay: Duration) -> Result<LinkProfile> {
    Ok(LinkProfile::new(
        name,
        Link::constant(bits_per_sec, delay)?,
        generous_down(delay)?,
    ))
}

fn builtin(name: &str) -> Result<LinkProfile> {
    const MBIT: u64 = 1_000_000;
    let profile = match name {
        "lte" => LinkProfile::new(
            name,
            Link::new(
                per_second(&LTE_UP_100KBIT, 100_000)?,
                LTE_DELAY,
                queue_for_rate((10 * MBIT) as f64),
            ),
            generous_down(LTE_DELAY)?,
        ),
        "3g" => LinkProfile::new(
            name,
            Link::new(
                per_second(&THREE_G_UP_10KBIT, 10_000)?,
                THREE_G_DELAY,
                queue_for_rate(MBIT as f64),
            ),
            generous_down(THREE_G_DELAY)?,
        ),
        "constant-10mbit-40ms" => constant_profile(name, 10 * MBIT, RTT40_DELAY)?,
        "constant-1mbit-150ms" => constant_profile(name, MBIT, THREE_G_DELAY)?,
        "step-20-2-20" => LinkProfile::new(
            name,
            Link::new(
                Schedule::steps([
                    (Duration::from_secs(10), 20 * MBIT),
                    (Duration::from_secs(20), 2 * MBIT),
                    (Duration::from_secs(30), 20 * MBIT),
                ])?,
                RTT40_DELAY,
                queue_for_rate((20 * MBIT) as f64),
            ),
            generous_down(RTT40_DELAY)?,
        ),
        "outage-20s" => {
            let p = constant_profile(name, 10 * MBIT, RTT40_DELAY)?;
            let (start, len) = (Duration::from_secs(10), Duration::from_secs(20));
            let up =
                p.up.clone()
                    .with_schedule(p.up.schedule.clone().with_outage(start, len));
            let down = p
                .down
                .clone()
                .with_schedule(p.down.schedule.clone().with_outage(start, len));
            p.with_up(up).with_down(down)
        }
        "lossy" => constant_profile(name, 10 * MBIT, RTT40_DELAY)?.with_faults(Faults {
            resets_per_mib: 1.0 / LOSSY_MIB_PER_RESET,
            reset_at: Vec::new(),
        }),
        "handover" => constant_profile(name, 10 * MBIT, RTT40_DELAY)?.with_faults(Faults {
            resets_per_mib: 0.0,
            reset_at: HANDOVER_TIMES_S
                .iter()
                .map(|&s| Duration::from_secs(s))
                .collect(),
        }),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "unknown link profile {name:?}; known profiles: {} (or a Mahimahi trace file path)",
                    PROFILE_NAMES.join(", ")
                ),
            ));
        }
    };
    Ok(profile)
}

/// Bytes per MiB as a float, for fault rates.
pub(crate) const MIB_F64: f64 = MIB as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_resolves_and_summarises() {
        assert_eq!(LinkProfile::builtins().len(), PROFILE_NAMES.len());
        for name in LinkProfile::names() {
            let p = LinkProfile::from_name(name).unwrap();
            assert_eq!(p.name(), *name);
            let line = p.summary();
            assert!(line.starts_with(name), "{line}");
            assert!(p.up().queue_bytes() >= MIN_QUEUE_BYTES);
        }
        assert!(LinkProfile::from_name("LTE").is_ok());
        let err = LinkProfile::from_name("5g-dream").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("constant-10mbit-40ms"), "{err}");
    }

    #[test]
    fn builtin_rates_are_what_the_names_say() {
        let p = LinkProfile::from_name("constant-1mbit-150ms").unwrap();
        assert_eq!(p.up().schedule().constant_rate(), Some(1_000_000));
        assert_eq!(p.rtt(), Duration::from_millis(150));
        let lte = LinkProfile::from_name("lte").unwrap();
        let mean = lte.up().mean_rate();
        assert!((9e6..11e6).contains(&mean), "{mean}");
        let g3 = LinkProfile::from_name("3g").unwrap();
        let mean = g3.up().mean_rate();
        assert!((0.8e6..1.2e6).contains(&mean), "{mean}");
        assert_eq!(g3.rtt(), Duration::from_millis(150));
        let outage = LinkProfile::from_name("outage-20s").unwrap();
        let s = outage.up().schedule();
        assert_eq!(
            s.capacity_between(Duration::from_millis(10_001), Duration::from_secs(30)),
            0
        );
        assert_eq!(
            outage
                .down()
                .schedule()
                .capacity_between(Duration::from_millis(10_001), Duration::from_secs(30)),
            0
        );
        assert!(
            outage.summary().contains("outage 10-30 s"),
            "{}",
            outage.summary()
        );
        let lossy = LinkProfile::from_name("lossy").unwrap();
        assert_eq!(lossy.faults().resets_per_mib, 0.125);
        assert!(lossy.summary().contains("8.0 MiB"));
        assert!(!lossy.faults().is_none());
        assert!(Faults::none().is_none());
        let odd = Faults {
            resets_per_mib: f64::NAN,
            reset_at: Vec::new(),
        };
        assert!(odd.is_none());
        let step = LinkProfile::from_name("step-20-2-20").unwrap();
        assert_eq!(step.up().schedule().period(), Some(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn trace_files_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path().join("x.up");
        tokio::fs::write(&up, "1\n2\n2\n").await.unwrap();
        let p = LinkProfile::from_trace_file(&up).await.unwrap();
        assert_eq!(p.name(), "x.up");
        assert_eq!(p.up().schedule().period(), Some(Duration::from_millis(2)));
        assert_eq!(
            p.down().schedule().constant_rate(),
            Some(GENEROUS_DOWNLINK_BPS)
        );
        tokio::fs::write(dir.path().join("x.down"), "5\n")
            .await
            .unwrap();
        let p = LinkProfile::resolve(up.to_str().unwrap()).await.unwrap();
        assert_eq!(p.down().schedule().period(), Some(Duration::from_millis(5)));
        let p = LinkProfile::resolve("lossy").await.unwrap();
        assert_eq!(p.name(), "lossy");
        let bad = dir.path().join("bad.up");
        tokio::fs::write(&bad, "3\n1\n").await.unwrap();
        let err = LinkProfile::resolve(bad.to_str().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let err = LinkProfile::resolve("/nonexistent/trace.up")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    }
}
