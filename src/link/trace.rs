//! Mahimahi `mm-link` traces: parsing and the packet-opportunity arithmetic.
//!
//! Each line of a trace is one millisecond timestamp at which one [`MTU`]-byte packet may leave
//! the bottleneck; a repeated timestamp gives several packets in that millisecond. The file loops
//! with period `P` = the last timestamp: loop `k` delivers at `k*P + t_i`.
//!
//! Internally the opportunities are folded into phases in `[0, P)`: a timestamp `t_i < P` has
//! phase `t_i` and occurs in every loop `k >= 0`; a timestamp equal to `P` has phase 0 and occurs
//! only from loop 1 on (at `(k+1)*P`). The opportunity sequence is therefore the periodic
//! sequence of the sorted phases minus the `m` phase-0 entries of loop 0 that come from
//! timestamps equal to `P`. Both directions of the mapping (time to count, count to time) are
//! then O(log n) and O(1), whatever the time.

use super::schedule::ScheduleError;

/// The packet size of one delivery opportunity, in bytes.
///
/// Source: Mahimahi's `mm-link` (each trace line is one opportunity for one MTU-sized packet,
/// `PACKET_SIZE = 1504` bytes with the 4-byte tun header, 1500 bytes of IP packet).
pub const MTU: u64 = 1500;

const NANOS_PER_MILLI: u64 = 1_000_000;

/// A parsed trace, folded into phases (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Trace {
    /// Sorted opportunity phases within one loop, in nanoseconds, each in `[0, period)`.
    phases: Vec<u64>,
    /// How many timestamps equal the period (they are absent from loop 0's phase 0).
    missing_at_zero: u64,
    /// The loop period in nanoseconds (the last timestamp).
    period: u64,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The phase list has up to millions of entries: summarise it.
        f.debug_struct("Trace")
            .field("opportunities_per_loop", &self.phases.len())
            .field("period_ns", &self.period)
            .finish()
    }
}

impl Trace {
    /// Parses Mahimahi text. Blank lines (and surrounding whitespace) are ignored; anything
    /// else must be a non-negative integer of milliseconds, in non-decreasing order.
    pub(crate) fn parse(text: &str) -> Result<Trace, ScheduleError> {
        let mut stamps: Vec<u64> = Vec::new();
        let mut last_line = 0;
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let invalid = || ScheduleError::InvalidTimestamp {
                line: idx + 1,
                text: line.chars().take(40).collect(),
            };
            let ms: u64 = line.parse().map_err(|_| invalid())?;
            let ns = ms.checked_mul(NANOS_PER_MILLI).ok_or_else(invalid)?;
            if let Some(&prev) = stamps.last() {
                if ns < prev {
                    return Err(ScheduleError::DecreasingTimestamp {
                        line: idx + 1,
                        previous_ms: prev / NANOS_PER_MILLI,
                        value_ms: ms,
                    });
                }
            }
            stamps.push(ns);
            last_line = idx + 1;
        }
        let Some(&period) = stamps.last() else {
            return Err(ScheduleError::EmptyTrace);
        };
        if period == 0 {
            return Err(ScheduleError::ZeroPeriod { line: last_line });
        }
        // Timestamps equal to the period are at the end (the input is sorted): fold them to
        // phase 0 and move them to the front, keeping the phases sorted.
        let at_period = stamps.iter().rev().take_while(|&&t| t == period).count();
        stamps.truncate(stamps.len() - at_period);
        let mut phases = vec![0u64; at_period];
        phases.extend_from_slice(&stamps);
        Ok(Trace {
            phases,
            missing_at_zero: at_period as u64,
            period,
        })
    }

    /// Opportunities per loop.
    pub(crate) fn opportunities_per_loop(&self) -> u64 {
        self.phases.len() as u64
    }

    /// The loop period in nanoseconds.
    pub(crate) fn period_ns(&self) -> u64 {
        self.period
    }

    /// Number of opportunities at times `< t` (nanoseconds).
    fn count_before(&self, t: u64) -> u128 {
        if t == 0 {
            return 0;
        }
        let loops = u128::from(t / self.period);
        let phase = t % self.period;
        let within = self.phases.partition_point(|&p| p < phase) as u128;
        // For t > 0 the periodic count includes all of loop 0's phase-0 entries, so the
        // subtraction cannot underflow.
        loops * u128::from(self.opportunities_per_loop()) + within
            - u128::from(self.missing_at_zero)
    }

    /// Bytes of capacity offered at times `< t` (nanoseconds).
    pub(crate) fn bytes_before(&self, t: u64) -> u128 {
        self.count_before(t) * u128::from(MTU)
    }

    /// The time (nanoseconds) at which capacity byte `y` (1-based) is offered.
    pub(crate) fn time_of(&self, y: u128) -> u128 {
        let opportunity = y.max(1).div_ceil(u128::from(MTU));
        let z = opportunity + u128::from(self.missing_at_zero) - 1;
        let n = u128::from(self.opportunities_per_loop());
        let loops = z / n;
        // `z % n < n = phases.len()`, so the index is in range.
        let phase = self.phases[(z % n) as usize];
        loops
            .saturating_mul(u128::from(self.period))
            .saturating_add(u128::from(phase))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All opportunity times (ms) in loops `0..loops`, straight from the definition.
    fn brute(stamps: &[u64], loops: u64) -> Vec<u64> {
        let p = *stamps.last().unwrap();
        let mut v: Vec<u64> = (0..loops)
            .flat_map(|k| stamps.iter().map(move |t| k * p + t))
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn parse_errors_are_typed() {
        assert!(matches!(Trace::parse(""), Err(ScheduleError::EmptyTrace)));
        assert!(matches!(
            Trace::parse("\n  \n"),
            Err(ScheduleError::EmptyTrace)
        ));
        assert!(matches!(
            Trace::parse("1\nx2\n"),
            Err(ScheduleError::InvalidTimestamp { line: 2, .. })
        ));
        assert!(matches!(
            Trace::parse("-1\n"),
            Err(ScheduleError::InvalidTimestamp { line: 1, .. })
        ));
        assert!(matches!(
            Trace::parse("99999999999999999999\n"),
            Err(ScheduleError::InvalidTimestamp { line: 1, .. })
        ));
        assert!(matches!(
            Trace::parse("1\n5\n3\n"),
            Err(ScheduleError::DecreasingTimestamp {
                line: 3,
                previous_ms: 5,
                value_ms: 3
            })
        ));
        assert!(matches!(
            Trace::parse("0\n0\n"),
            Err(ScheduleError::ZeroPeriod { line: 2 })
        ));
    }

    #[test]
    fn folding_matches_the_definition() {
        for stamps in [
            vec![1u64, 1, 3],
            vec![0, 0, 2, 2, 2],
            vec![5],
            vec![0, 4, 4, 7, 7, 7],
        ] {
            let text: String = stamps.iter().map(|t| format!("{t}\n")).collect();
            let trace = Trace::parse(&text).unwrap();
            let all = brute(&stamps, 5);
            // Opportunity j (1-based) is at all[j-1], for the first four loops' worth.
            for (j, &ms) in all.iter().enumerate().take(stamps.len() * 4) {
                let y = (j as u128) * u128::from(MTU) + 1;
                assert_eq!(
                    trace.time_of(y),
                    u128::from(ms * NANOS_PER_MILLI),
                    "{stamps:?} #{j}"
                );
                let y_last = (j as u128 + 1) * u128::from(MTU);
                assert_eq!(trace.time_of(y_last), u128::from(ms * NANOS_PER_MILLI));
            }
            for t_ms in 0..(stamps.last().unwrap() * 4) {
                let expected = all.iter().filter(|&&x| x < t_ms).count() as u128;
                assert_eq!(
                    trace.bytes_before(t_ms * NANOS_PER_MILLI),
                    expected * u128::from(MTU),
                    "{stamps:?} t={t_ms}"
                );
            }
        }
    }
}
