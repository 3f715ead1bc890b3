//! Delivery schedules (when bytes may leave a bottleneck) and the FIFO queue in front of one.
//! Pure: no I/O, no clock. The model is documented on [`Schedule`] and [`Bottleneck`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::trace::Trace;

/// Units of the rate integral per capacity byte: `S` is accumulated as bit/s × ns, so one byte
/// is `8 bits × 1e9 ns/s`.
const SCALE: u128 = 8 * NANOS_PER_SEC;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The period used internally for a constant rate (any period gives the same integral).
///
/// Source: arbitrary; one second keeps the per-loop integral small and exact.
const CONSTANT_PERIOD: Duration = Duration::from_secs(1);

/// The highest rate a constant or step schedule accepts, in bit/s.
///
/// Source: a bound that keeps every rate integral within `u128` (1 Tbit/s × 584 years is
/// below 2^105), far above any link the proxy can emulate.
pub const MAX_RATE_BPS: u64 = 1_000_000_000_000;

/// Why a schedule could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The trace has no timestamps.
    #[error("the trace has no timestamps")]
    EmptyTrace,
    /// A line is not a non-negative integer number of milliseconds (or is absurdly large).
    #[error("trace line {line}: {text:?} is not a millisecond timestamp")]
    InvalidTimestamp {
        /// 1-based line number.
        line: usize,
        /// The offending text (truncated to 40 characters).
        text: String,
    },
    /// A timestamp is smaller than the one before it.
    #[error(
        "trace line {line}: timestamp {value_ms} ms is before the previous one ({previous_ms} ms)"
    )]
    DecreasingTimestamp {
        /// 1-based line number.
        line: usize,
        /// The previous timestamp.
        previous_ms: u64,
        /// The offending timestamp.
        value_ms: u64,
    },
    /// The last timestamp (the loop period) is 0.
    #[error("trace line {line}: the last timestamp is 0, so the loop period would be 0")]
    ZeroPeriod {
        /// 1-based line number of the last timestamp.
        line: usize,
    },
    /// A constant or step schedule never delivers anything (rate 0, or every step at rate 0,
    /// or no step of non-zero duration).
    #[error("the schedule never delivers any byte (every rate is 0 or every step is empty)")]
    NoCapacity,
    /// A rate above [`MAX_RATE_BPS`].
    #[error("rate of {bits_per_sec} bit/s is above the 1 Tbit/s maximum")]
    RateTooHigh {
        /// The offending rate.
        bits_per_sec: u64,
    },
    /// Reading a trace file failed.
    #[error("cannot read trace file {path}")]
    Io {
        /// The path as given.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl From<ScheduleError> for crate::Error {
    fn from(e: ScheduleError) -> Self {
        let kind = match e {
            ScheduleError::Io { .. } => crate::ErrorKind::Io,
            _ => crate::ErrorKind::InvalidConfig,
        };
        crate::Error::new(kind, "invalid link schedule").with_source(e)
    }
}

/// A piecewise-constant rate over one loop, with its integral at each step start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fluid {
    /// Step start within the loop, ns; `starts[0] == 0`.
    starts: Vec<u64>,
    /// Step rate, bit/s.
    rates: Vec<u64>,
    /// `S` at each step start, plus the whole loop's integral at the end (`len + 1` entries).
    cum: Vec<u128>,
    /// Loop period, ns.
    period: u64,
}

impl Fluid {
    fn new(steps: &[(Duration, u64)]) -> Result<Fluid, ScheduleError> {
        let mut starts = Vec::with_capacity(steps.len());
        let mut rates = Vec::with_capacity(steps.len());
        let mut cum = vec![0u128];
        let mut at: u64 = 0;
        for &(len, rate) in steps {
            let len = duration_ns(len);
            if len == 0 {
                continue;
            }
            if rate > MAX_RATE_BPS {
                return Err(ScheduleError::RateTooHigh { bits_per_sec: rate });
            }
            starts.push(at);
            rates.push(rate);
            let prev = cum.last().copied().unwrap_or(0);
            cum.push(prev + u128::from(rate) * u128::from(len));
            at = at.saturating_add(len);
        }
        if cum.last().copied().unwrap_or(0) == 0 {
            return Err(ScheduleError::NoCapacity);
        }
        Ok(Fluid {
            starts,
            rates,
            cum,
            period: at,
        })
    }

    fn loop_integral(&self) -> u128 {
        self.cum.last().copied().unwrap_or(0)
    }

    /// `S(r)` for `r` in `[0, period]`.
    fn integral_within(&self, r: u64) -> u128 {
        // starts[0] == 0 <= r, so the partition point is at least 1.
        let i = self.starts.partition_point(|&s| s <= r).saturating_sub(1);
        self.cum[i] + u128::from(self.rates[i]) * u128::from(r - self.starts[i])
    }

    /// `S(t)` for any `t`.
    fn integral(&self, t: u64) -> u128 {
        u128::from(t / self.period) * self.loop_integral() + self.integral_within(t % self.period)
    }

    fn bytes_before(&self, t: u64) -> u128 {
        if t == 0 {
            0
        } else {
            self.integral(t - 1) / SCALE
        }
    }

    fn time_of(&self, y: u128) -> u128 {
        let target = y.max(1) * SCALE;
        let per_loop = self.loop_integral();
        let loops = (target - 1) / per_loop;
        let rem = target - loops * per_loop; // in (0, per_loop]
        // The first step whose end integral reaches `rem`; it has a non-zero rate because its
        // start integral is below `rem`.
        let i = self.cum[1..].partition_point(|&c| c < rem);
        let i = i.min(self.rates.len() - 1);
        let rate = u128::from(self.rates[i].max(1));
        let within = u128::from(self.starts[i]) + (rem - self.cum[i]).div_ceil(rate);
        loops
            .saturating_mul(u128::from(self.period))
            .saturating_add(within)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    Constant { bits_per_sec: u64, fluid: Fluid },
    Steps(Fluid),
    Trace(Arc<Trace>),
}

impl Base {
    fn bytes_before(&self, t: u64) -> u128 {
        match self {
            Base::Constant { fluid, .. } | Base::Steps(fluid) => fluid.bytes_before(t),
            Base::Trace(trace) => trace.bytes_before(t),
        }
    }

    fn time_of(&self, y: u128) -> u128 {
        match self {
            Base::Constant { fluid, .. } | Base::Steps(fluid) => fluid.time_of(y),
            Base::Trace(trace) => trace.time_of(y),
        }
    }
}

/// When bytes may leave a bottleneck.
///
/// Everything here is pure: no I/O, no clock. Times are [`Duration`]s on the schedule's own time
/// axis, which starts at 0; an emulation may begin anywhere on it (the *start offset*).
///
/// # The capacity model
///
/// A schedule offers *capacity bytes*, numbered 1, 2, 3, ... in time order. Capacity byte `y` is
/// offered at [`Schedule::time_of`]`(y)`, and [`Schedule::capacity_before`]`(t)` counts the
/// capacity bytes offered strictly before `t`. The two are exact inverses:
/// `time_of(y) < t` if and only if `y <= capacity_before(t)`.
///
/// * **Trace** (Mahimahi): each timestamp is one opportunity for [`MTU`](crate::link::MTU)
///   bytes, so capacity bytes `1..=1500` belong to the first opportunity, and so on. The file
///   loops with period = the last timestamp.
/// * **Constant** and **Steps**: a byte-rate integral. With `S(t) = ∫ rate` (in bits), capacity
///   byte `y` is offered at the first nanosecond `t` with `S(t) >= 8*y`. No per-packet list is
///   kept, so 200 Mbit/s costs the same as 1 Mbit/s. Steps **loop** (period = the sum of the
///   step durations), like traces; a rate of 0 in a step is an outage.
/// * **Outages** ([`Schedule::with_outage`]) remove every capacity byte offered in
///   `(start, start + len]` of schedule time (for a rate, exactly the bytes whose transmission
///   ends inside the outage). They do not loop: they are absolute intervals on the schedule's
///   axis, and they compose with any of the above.
///
/// Cheap to clone (a trace's opportunity list is shared).
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    base: Base,
    /// Sorted, disjoint, non-adjacent `[start, end)` intervals in ns.
    outages: Vec<(u64, u64)>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl Schedule {
    /// A constant rate.
    ///
    /// # Errors
    /// [`ScheduleError::NoCapacity`] if `bits_per_sec` is 0.
    pub fn constant(bits_per_sec: u64) -> Result<Schedule, ScheduleError> {
        let fluid = Fluid::new(&[(CONSTANT_PERIOD, bits_per_sec)])?;
        Ok(Schedule {
            base: Base::Constant {
                bits_per_sec,
                fluid,
            },
            outages: Vec::new(),
        })
    }

    /// A piecewise-constant rate: each `(duration, bits_per_sec)` step in turn. The list
    /// **loops** (period = the sum of the durations), as a Mahimahi trace does; to hold a rate
    /// after a pattern, make the last step long. A step at rate 0 is an outage. Zero-length
    /// steps are ignored.
    ///
    /// # Errors
    /// [`ScheduleError::NoCapacity`] if no step has both a non-zero duration and a non-zero rate.
    pub fn steps(
        steps: impl IntoIterator<Item = (Duration, u64)>,
    ) -> Result<Schedule, ScheduleError> {
        let steps: Vec<_> = steps.into_iter().collect();
        Ok(Schedule {
            base: Base::Steps(Fluid::new(&steps)?),
            outages: Vec::new(),
        })
    }

    /// A Mahimahi trace given as text (one millisecond timestamp per line; blank lines ignored).
    ///
    /// # Errors
    /// [`ScheduleError::EmptyTrace`], [`ScheduleError::InvalidTimestamp`],
    /// [`ScheduleError::DecreasingTimestamp`] or [`ScheduleError::ZeroPeriod`].
    pub fn from_mahimahi_str(text: &str) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            base: Base::Trace(Arc::new(Trace::parse(text)?)),
            outages: Vec::new(),
        })
    }

    /// A Mahimahi trace read from a file (with `tokio::fs`).
    ///
    /// # Errors
    /// [`ScheduleError::Io`] if the file cannot be read, or any error of
    /// [`Schedule::from_mahimahi_str`].
    pub async fn from_mahimahi_file(path: impl AsRef<Path>) -> Result<Schedule, ScheduleError> {
        let path = path.as_ref();
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| ScheduleError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Schedule::from_mahimahi_str(&text)
    }

    /// This schedule with no delivery in `(start, start + len]` of schedule time. Outages do not
    /// loop; overlapping or adjacent outages merge. A zero `len` changes nothing.
    #[must_use]
    pub fn with_outage(mut self, start: Duration, len: Duration) -> Schedule {
        // Stored as the half-open `[start + 1 ns, start + len + 1 ns)`: capacity offered at a
        // time `t` in `(start, start + len]` is exactly the capacity offered at times `t` with
        // `start + 1 <= t < start + len + 1`, which `bytes_before_ns` differences count.
        let s = duration_ns(start).saturating_add(1);
        let e = s.saturating_add(duration_ns(len));
        if e > s {
            self.outages.push((s, e));
            self.outages.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.outages.len());
            for (s, e) in self.outages.drain(..) {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            self.outages = merged;
        }
        self
    }

    /// The outage intervals `(start, len)`, sorted and merged.
    pub fn outages(&self) -> Vec<(Duration, Duration)> {
        self.outages
            .iter()
            .map(|&(s, e)| (Duration::from_nanos(s - 1), Duration::from_nanos(e - s)))
            .collect()
    }

    /// The loop period of a trace or step schedule; `None` for a constant rate.
    pub fn period(&self) -> Option<Duration> {
        match &self.base {
            Base::Constant { .. } => None,
            Base::Steps(f) => Some(Duration::from_nanos(f.period)),
            Base::Trace(t) => Some(Duration::from_nanos(t.period_ns())),
        }
    }

    /// The rate of a constant schedule, in bit/s.
    pub fn constant_rate(&self) -> Option<u64> {
        match &self.base {
            Base::Constant { bits_per_sec, .. } => Some(*bits_per_sec),
            _ => None,
        }
    }

    /// Capacity bytes offered strictly before schedule time `t` (outages removed).
    pub fn capacity_before(&self, t: Duration) -> u64 {
        saturate_u64(self.bytes_before_ns(duration_ns(t)))
    }

    /// Capacity bytes offered in `[from, to)` of schedule time (0 if `to <= from`).
    pub fn capacity_between(&self, from: Duration, to: Duration) -> u64 {
        let (from, to) = (duration_ns(from), duration_ns(to));
        if to <= from {
            return 0;
        }
        saturate_u64(self.bytes_before_ns(to) - self.bytes_before_ns(from))
    }

    /// The schedule time at which capacity byte `y` (1-based; 0 is treated as 1) is offered.
    /// Saturates at `u64::MAX` nanoseconds (about 584 years).
    pub fn time_of(&self, y: u64) -> Duration {
        nanos_to_duration(self.time_of_ns(u128::from(y)))
    }

    /// The mean rate over `[from, from + len)` of schedule time, in bit/s.
    pub fn mean_rate(&self, from: Duration, len: Duration) -> f64 {
        if len.is_zero() {
            return 0.0;
        }
        let bytes = self.capacity_between(from, from.saturating_add(len));
        bytes as f64 * 8.0 / len.as_secs_f64()
    }

    /// Capacity bytes offered strictly before `t` ns.
    pub(crate) fn bytes_before_ns(&self, t: u64) -> u128 {
        let mut total = self.base.bytes_before(t);
        for &(s, e) in &self.outages {
            if s >= t {
                break;
            }
            // Capacity offered inside [s, min(e, t)) is removed.
            total -= self.base.bytes_before(e.min(t)) - self.base.bytes_before(s);
        }
        total
    }

    /// The time (ns) at which capacity byte `y` (1-based) is offered, outages skipped.
    pub(crate) fn time_of_ns(&self, y: u128) -> u128 {
        let y = y.max(1);
        let mut removed: u128 = 0;
        for &(s, e) in &self.outages {
            let t = self.base.time_of(y.saturating_add(removed));
            if t < u128::from(s) {
                return t;
            }
            // The target is at or after the outage start: every capacity byte inside the
            // outage precedes it in base numbering and must be skipped.
            removed += self.base.bytes_before(e) - self.base.bytes_before(s);
        }
        self.base.time_of(y.saturating_add(removed))
    }

    /// Capacity bytes offered at times `<= t` ns.
    fn bytes_through_ns(&self, t: u64) -> u128 {
        match t.checked_add(1) {
            Some(next) => self.bytes_before_ns(next),
            None => self.bytes_before_ns(t),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.base {
            Base::Constant { bits_per_sec, .. } => {
                write!(f, "constant {}", format_rate(*bits_per_sec as f64))?
            }
            Base::Steps(fl) => write!(
                f,
                "{} steps looping every {:?}",
                fl.rates.len(),
                Duration::from_nanos(fl.period)
            )?,
            Base::Trace(t) => write!(
                f,
                "trace of {} opportunities looping every {:?}",
                t.opportunities_per_loop(),
                Duration::from_nanos(t.period_ns())
            )?,
        }
        for (s, len) in self.outages() {
            write!(
                f,
                ", outage {:.1}-{:.1} s",
                s.as_secs_f64(),
                (s + len).as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// Formats a rate in bit/s as `12.3 Mbit/s` (or kbit/s below 1 Mbit/s).
pub(crate) fn format_rate(bits_per_sec: f64) -> String {
    if bits_per_sec >= 1e6 {
        format!("{:.1} Mbit/s", bits_per_sec / 1e6)
    } else {
        format!("{:.0} kbit/s", bits_per_sec / 1e3)
    }
}

/// A FIFO queue in front of a [`Schedule`], started at an offset on the schedule's axis.
///
/// Bytes that arrive at `a` may use capacity offered strictly after `a`; capacity offered
/// while the queue is empty is lost (it cannot be saved up). This is Mahimahi's `mm-link` rule:
/// on a packet's arrival it first burns every opportunity up to and including the current
/// millisecond, then enqueues the packet. Each enqueued byte is assigned the next unused
/// capacity byte, and leaves at that capacity byte's time. [`departure_times`] is the same
/// computation for a whole list of arrivals.
///
/// Times are integer nanoseconds. For constant and step schedules an arrival in the middle of a
/// byte time may be credited with that partial byte, so departures there are exact to within
/// one byte time (8 ns at 1 Gbit/s, 8 µs at 1 Mbit/s).
///
/// Times given to and returned by a `Bottleneck` are *emulation* times: elapsed since the
/// start, so emulation time `e` is schedule time `start_offset + e`. Enqueued bytes are numbered
/// by *units*: unit `u` (1-based) is the `u`-th capacity byte offered from the start on. Units
/// skipped because the queue was empty when they were offered are lost.
///
/// ```
/// use std::time::Duration;
/// use chunkwise::link::{Bottleneck, Schedule};
///
/// // 8 Mbit/s = 1 byte per µs.
/// let mut q = Bottleneck::new(Schedule::constant(8_000_000)?, Duration::ZERO);
/// let a = q.enqueue(Duration::ZERO, 1_000);
/// assert_eq!(a.last_departure, Duration::from_micros(1_000));
/// // The queue is busy until 1 ms, so these 500 bytes wait behind the first batch.
/// let b = q.enqueue(Duration::from_micros(400), 500);
/// assert_eq!(b.last_departure, Duration::from_micros(1_500));
/// assert_eq!(q.backlog(Duration::from_micros(1_200)), 300);
/// # Ok::<(), chunkwise::link::ScheduleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bottleneck {
    schedule: Schedule,
    /// The start offset in ns.
    offset: u64,
    /// Capacity bytes offered before the start (global numbering of unit 0).
    base: u128,
    /// The last unit claimed (units are relative to `base`).
    claimed: u64,
    /// The latest arrival time seen, ns since start.
    last_arrival: u64,
}

/// Where an enqueued batch sits in the bottleneck's unit numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The unit of the batch's first byte (1-based). The batch holds units
    /// `first_unit..first_unit + len`.
    pub first_unit: u64,
    /// Bytes in the batch.
    pub len: u64,
    /// When the batch's last byte leaves (its arrival time if the batch is empty).
    pub last_departure: Duration,
}

impl Bottleneck {
    /// An empty queue in front of `schedule`, whose time axis starts at `start_offset`.
    pub fn new(schedule: Schedule, start_offset: Duration) -> Bottleneck {
        let offset = duration_ns(start_offset);
        let base = schedule.bytes_before_ns(offset);
        Bottleneck {
            schedule,
            offset,
            base,
            claimed: 0,
            last_arrival: 0,
        }
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The start offset on the schedule's axis.
    pub fn start_offset(&self) -> Duration {
        Duration::from_nanos(self.offset)
    }

    /// Appends `bytes` arriving at emulation time `at`. Arrivals must come in time order; an
    /// earlier `at` than a previous arrival is treated as that previous time.
    pub fn enqueue(&mut self, at: Duration, bytes: u64) -> Enqueued {
        let at = duration_ns(at).max(self.last_arrival);
        self.last_arrival = at;
        // Capacity offered up to `at` while the queue was empty is lost.
        let lost = self.units_through_ns(at);
        let first_unit = self.claimed.max(lost).saturating_add(1);
        if bytes == 0 {
            return Enqueued {
                first_unit,
                len: 0,
                last_departure: Duration::from_nanos(at),
            };
        }
        self.claimed = (first_unit - 1).saturating_add(bytes);
        // `claimed >= first_unit` unless saturated at u64::MAX.
        Enqueued {
            first_unit,
            len: bytes,
            last_departure: self.departure(self.claimed),
        }
    }

    /// When unit `unit` (1-based) leaves, in emulation time.
    pub fn departure(&self, unit: u64) -> Duration {
        let t = self
            .schedule
            .time_of_ns(self.base + u128::from(unit.max(1)));
        nanos_to_duration(t.saturating_sub(u128::from(self.offset)))
    }

    /// The number of units offered up to and including emulation time `at`: every enqueued
    /// byte with a unit at or below this has left.
    pub fn units_through(&self, at: Duration) -> u64 {
        self.units_through_ns(duration_ns(at))
    }

    /// Bytes enqueued and not yet departed at emulation time `at` (`at` should not be earlier
    /// than the last arrival).
    pub fn backlog(&self, at: Duration) -> u64 {
        self.claimed.saturating_sub(self.units_through(at))
    }

    /// The earliest emulation time at which the backlog is at most `bytes`.
    pub fn drained_to(&self, bytes: u64) -> Duration {
        if self.claimed <= bytes {
            return Duration::from_nanos(self.last_arrival);
        }
        self.departure(self.claimed - bytes)
            .max(Duration::from_nanos(self.last_arrival))
    }

    /// Units offered up to and including emulation time `at` ns.
    fn units_through_ns(&self, at: u64) -> u64 {
        let t = self.offset.saturating_add(at);
        saturate_u64(self.schedule.bytes_through_ns(t) - self.base)
    }
}

/// For each arrival `(time, bytes)` (emulation times, in order), when its last byte leaves a
/// FIFO queue in front of `schedule` started at `start_offset`. An empty batch "leaves" at its
/// arrival time.
///
/// ```
/// use std::time::Duration;
/// use chunkwise::link::{departure_times, Schedule};
///
/// // One 1500-byte packet at 1 ms, two at 2 ms, loop every 2 ms.
/// let s = Schedule::from_mahimahi_str("1\n2\n2\n")?;
/// let ms = Duration::from_millis;
/// let out = departure_times(&s, Duration::ZERO, &[(ms(0), 1500), (ms(0), 3000), (ms(3), 100)]);
/// // The packet arriving at 3 ms cannot use the opportunity at 3 ms (Mahimahi burns it first).
/// assert_eq!(out, [ms(1), ms(2), ms(4)]);
/// # Ok::<(), chunkwise::link::ScheduleError>(())
/// ```
pub fn departure_times(
    schedule: &Schedule,
    start_offset: Duration,
    arrivals: &[(Duration, u64)],
) -> Vec<Duration> {
    let mut q = Bottleneck::new(schedule.clone(), start_offset);
    arrivals
        .iter()
        .map(|&(at, bytes)| q.enqueue(at, bytes).last_departure)
        .collect()
}

/// Nanoseconds of a duration, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn nanos_to_duration(ns: u128) -> Duration {
    Duration::from_nanos(saturate_u64(ns))
}

fn saturate_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn constant_rate_departures_are_exact() {
        // 8 Mbit/s: one byte per microsecond.
        let s = Schedule::constant(8_000_000).unwrap();
        assert_eq!(s.time_of(1), us(1));
        assert_eq!(s.time_of(1_000_000), Duration::from_secs(1));
        assert_eq!(s.capacity_before(ms(10)), 9_999); // the 10_000th byte is offered at 10 ms
        assert_eq!(s.capacity_between(ms(10), ms(20)), 10_000);
        let out = departure_times(
            &s,
            Duration::ZERO,
            &[(us(0), 100), (us(50), 100), (us(500), 10), (us(500), 0)],
        );
        // Busy until 100 µs, then the second batch; the third finds the queue idle.
        assert_eq!(out, [us(100), us(200), us(510), us(500)]);
    }

    #[test]
    fn start_offset_shifts_the_axis() {
        // 20 Mbit/s for 10 s, 2 Mbit/s for 20 s, then 20 Mbit/s for 30 s (looping at 60 s).
        let s = Schedule::steps([
            (Duration::from_secs(10), 20_000_000),
            (Duration::from_secs(20), 2_000_000),
            (Duration::from_secs(30), 20_000_000),
        ])
        .unwrap();
        assert_eq!(s.period(), Some(Duration::from_secs(60)));
        // Starting 1 s before the drop: 2.5 MB at 20 Mbit/s in the first second, then 250 kB/s.
        let out = departure_times(&s, Duration::from_secs(9), &[(ms(0), 2_500_000 + 500_000)]);
        assert_eq!(out, [Duration::from_secs(3)]);
        // Starting at 59 s: 1 s at 20 Mbit/s, then the loop begins again at 20 Mbit/s.
        let out = departure_times(&s, Duration::from_secs(59), &[(ms(0), 5_000_000)]);
        assert_eq!(out, [Duration::from_secs(2)]);
        // Starting at 30 s (the last step): 30 s at 20 Mbit/s = 75 MB, then the loop's first
        // step; 76 MB needs 0.4 s into the next loop.
        let out = departure_times(&s, Duration::from_secs(30), &[(ms(0), 76_000_000)]);
        assert_eq!(out, [ms(30_400)]);
    }

    #[test]
    fn step_rate_zero_is_an_outage() {
        // 1 MB/s for 1 s, nothing for 1 s: loops every 2 s.
        let s = Schedule::steps([(ms(1000), 8_000_000), (ms(1000), 0)]).unwrap();
        assert_eq!(s.time_of(1_000_000), ms(1000));
        assert_eq!(s.time_of(1_000_001), ms(2000) + us(1));
        assert_eq!(s.time_of(2_500_000), ms(4500));
        // Byte 1_000_000 ends exactly at 1 s; nothing more until 2 s.
        assert_eq!(s.capacity_between(ms(1000), ms(2000)), 1);
        assert_eq!(s.capacity_between(ms(1001), ms(2000)), 0);
        assert_eq!(s.capacity_between(ms(0), ms(4000)), 2_000_000);
    }

    #[test]
    fn outages_remove_capacity_in_absolute_time() {
        // 1 MB/s with an outage from 1 s to 3 s.
        let s = Schedule::constant(8_000_000)
            .unwrap()
            .with_outage(ms(1000), ms(2000));
        assert_eq!(s.time_of(1_000_000), ms(999) + us(1000)); // exactly 1 s: before the outage
        assert_eq!(s.time_of(1_000_001), ms(3000) + us(1));
        assert_eq!(s.capacity_between(ms(500), ms(3500)), 1_000_000);
        // Arrivals during the outage wait for its end.
        let out = departure_times(&s, Duration::ZERO, &[(ms(1500), 1000)]);
        assert_eq!(out, [ms(3001)]);
        // A start offset after the outage sees a plain 1 MB/s link.
        let out = departure_times(&s, ms(5000), &[(ms(0), 1000)]);
        assert_eq!(out, [ms(1)]);
        // Overlapping outages merge; the outage does not loop.
        let s = s.with_outage(ms(2500), ms(1000)).with_outage(ms(10), ms(0));
        assert_eq!(s.outages(), vec![(ms(1000), ms(2500))]);
        assert_eq!(s.capacity_between(ms(10_000), ms(11_000)), 1_000_000);
    }

    #[test]
    fn trace_departures_loop_and_respect_the_offset() {
        // Opportunities at 1, 1, 3 ms; the loop period is 3 ms: 1,1,3, 4,4,6, 7,7,9, ...
        let s = Schedule::from_mahimahi_str("1\n1\n3\n").unwrap();
        assert_eq!(s.period(), Some(ms(3)));
        assert_eq!(s.time_of(1), ms(1));
        assert_eq!(s.time_of(3000), ms(1));
        assert_eq!(s.time_of(3001), ms(3));
        assert_eq!(s.time_of(4501), ms(4));
        assert_eq!(s.time_of(9001), ms(7));
        // Three 1500-byte packets at 0, then two more at 5 ms.
        let out = departure_times(&s, Duration::ZERO, &[(ms(0), 4500), (ms(5), 3000)]);
        assert_eq!(out, [ms(3), ms(7)]);
        // Started at 2 ms: the next opportunities are 3, 4, 4, 6 (schedule time), i.e. 1, 2,
        // 2, 4 ms of emulation time.
        let out = departure_times(&s, ms(2), &[(ms(0), 1500), (ms(0), 3000), (ms(0), 1)]);
        assert_eq!(out, [ms(1), ms(2), ms(4)]);
        // A packet smaller than the MTU still uses a whole opportunity when it is alone...
        let out = departure_times(&s, Duration::ZERO, &[(ms(0), 10), (ms(2), 10)]);
        assert_eq!(out, [ms(1), ms(3)]);
        // ...but bytes arriving in the same instant share one.
        let out = departure_times(
            &s,
            Duration::ZERO,
            &[(ms(0), 10), (ms(0), 1490), (ms(0), 1)],
        );
        assert_eq!(out, [ms(1), ms(1), ms(1)]);
    }

    #[test]
    fn trace_with_outage_skips_opportunities() {
        // One packet every ms (period 1 ms), outage over (2 ms, 4 ms].
        let s = Schedule::from_mahimahi_str("1\n")
            .unwrap()
            .with_outage(ms(2), ms(2));
        // Opportunities: 1, 2, (3, 4 removed), 5, ...
        assert_eq!(s.time_of(1500), ms(1));
        assert_eq!(s.time_of(1501), ms(2));
        assert_eq!(s.time_of(3001), ms(5));
        assert_eq!(s.capacity_between(ms(0), ms(6)), 3 * 1500);
    }

    #[test]
    fn bottleneck_backlog_and_drain() {
        let mut q = Bottleneck::new(Schedule::constant(8_000_000).unwrap(), Duration::ZERO);
        let e = q.enqueue(us(0), 1000);
        assert_eq!((e.first_unit, e.len), (1, 1000));
        assert_eq!(q.backlog(us(0)), 1000);
        assert_eq!(q.backlog(us(250)), 750);
        assert_eq!(q.drained_to(400), us(600));
        assert_eq!(q.drained_to(5000), us(0));
        assert_eq!(q.units_through(us(250)), 250);
        // Idle capacity is lost: an arrival at 2 ms gets units after 2000.
        let e = q.enqueue(us(2000), 10);
        assert_eq!(e.first_unit, 2001);
        assert_eq!(e.last_departure, us(2010));
        assert_eq!(q.departure(2000), us(2000));
        // Out-of-order arrivals are clamped to the latest arrival.
        let e = q.enqueue(us(1), 1);
        assert_eq!(e.last_departure, us(2011));
    }

    #[test]
    fn no_capacity_is_rejected() {
        assert!(matches!(
            Schedule::constant(0),
            Err(ScheduleError::NoCapacity)
        ));
        assert!(matches!(
            Schedule::steps([(ms(10), 0), (ms(0), 5)]),
            Err(ScheduleError::NoCapacity)
        ));
        assert!(matches!(
            Schedule::steps(Vec::new()),
            Err(ScheduleError::NoCapacity)
        ));
        assert!(matches!(
            Schedule::constant(MAX_RATE_BPS + 1),
            Err(ScheduleError::RateTooHigh { .. })
        ));
    }

    #[test]
    fn huge_times_saturate_instead_of_panicking() {
        let s = Schedule::constant(1).unwrap();
        assert_eq!(s.time_of(u64::MAX), Duration::from_nanos(u64::MAX));
        let s = Schedule::steps([(Duration::from_nanos(1), 1), (Duration::MAX, 0)]).unwrap();
        assert_eq!(s.time_of(u64::MAX), Duration::from_nanos(u64::MAX));
        let s = Schedule::constant(MAX_RATE_BPS)
            .unwrap()
            .with_outage(Duration::MAX, Duration::MAX);
        assert_eq!(
            s.capacity_before(Duration::MAX),
            s.capacity_before(Duration::MAX)
        );
        let s = Schedule::from_mahimahi_str("1000000000000\n").unwrap();
        assert_eq!(s.time_of(u64::MAX), Duration::from_nanos(u64::MAX));
        let mut q = Bottleneck::new(s, Duration::MAX);
        let e = q.enqueue(Duration::MAX, u64::MAX);
        assert_eq!(e.len, u64::MAX);
        let _ = q.backlog(Duration::MAX);
        let _ = q.drained_to(0);
    }
}
