//! Seeded fault injection on APPEND: rate-limit bursts, dropped connections, 5xx answers.
//!
//! Every random decision is a pure function of `(seed, kind, n)` where n is the APPEND's
//! ordinal (1-based, in arrival order), so the same seed gives the same faults for the same
//! request sequence, however many decisions of other kinds were taken.

use super::config::{DEFAULT_FAULT_STATUS, FaultConfig};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::Duration;

/// A stable 64-bit mix of a seed, a tag and a counter (the first 8 bytes of their SHA-256).
/// SHA-256 rather than `std`'s hasher because its output is fixed across Rust releases.
pub(crate) fn mix64(seed: u64, tag: &[u8], n: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(tag);
    h.update(n.to_le_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

/// A uniform number in `[0, 1)` from [`mix64`].
fn unit(seed: u64, tag: &[u8], n: u64) -> f64 {
    (mix64(seed, tag, n) >> 11) as f64 / (1u64 << 53) as f64
}

/// What to do with one APPEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Handle it normally.
    Pass,
    /// Answer 429 (burst) with this delay in `Retry-After` / `x-rate-limit-reset`.
    Burst(Duration),
    /// Read part of the body, then drop the connection.
    Drop,
    /// Answer with this 5xx status.
    ServerError(u16),
}

#[derive(Debug, Default)]
struct Counters {
    /// APPENDs seen so far.
    appends: u64,
    /// The last APPEND ordinal of the current burst (0: none).
    burst_until: u64,
}

/// The fault injector of one emulator.
#[derive(Debug)]
pub(crate) struct Faults {
    cfg: FaultConfig,
    counters: Mutex<Counters>,
}

impl Faults {
    pub(crate) fn new(cfg: FaultConfig) -> Self {
        Faults {
            cfg,
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Latency added to every request.
    pub(crate) fn added_latency(&self) -> Duration {
        self.cfg.added_latency
    }

    /// Decides the fate of the next APPEND.
    pub(crate) fn decide_append(&self) -> Decision {
        let mut c = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.appends += 1;
        let n = c.appends;
        if let Some(b) = self.cfg.rate_limit_burst {
            if n <= c.burst_until {
                return Decision::Burst(b.retry_after);
            }
            if n % b.every == 0 {
                c.burst_until = n + b.length - 1;
                return Decision::Burst(b.retry_after);
            }
        }
        drop(c);
        let seed = self.cfg.seed;
        if self.cfg.drop_connection_probability > 0.0
            && unit(seed, b"drop", n) < self.cfg.drop_connection_probability
        {
            return Decision::Drop;
        }
        if self.cfg.append_5xx_probability > 0.0
            && unit(seed, b"5xx", n) < self.cfg.append_5xx_probability
        {
            return Decision::ServerError(
                self.cfg.server_error_status.unwrap_or(DEFAULT_FAULT_STATUS),
            );
        }
        Decision::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::config::RateLimitBurst;

    fn run(cfg: FaultConfig, n: usize) -> Vec<Decision> {
        let f = Faults::new(cfg);
        (0..n).map(|_| f.decide_append()).collect()
    }

    #[test]
    fn same_seed_same_faults_and_rate_close_to_probability() {
        let cfg = FaultConfig {
            seed: 42,
            append_5xx_probability: 0.2,
            ..FaultConfig::none()
        };
        let a = run(cfg.clone(), 2000);
        assert_eq!(a, run(cfg.clone(), 2000));
        let errors = a
            .iter()
            .filter(|d| **d == Decision::ServerError(503))
            .count();
        assert!((340..=460).contains(&errors), "{errors}");
        let other = run(FaultConfig { seed: 43, ..cfg }, 2000);
        assert_ne!(a, other);
    }

    #[test]
    fn bursts_are_periodic() {
        let d = Duration::from_secs(2);
        let cfg = FaultConfig {
            rate_limit_burst: Some(RateLimitBurst {
                every: 4,
                length: 2,
                retry_after: d,
            }),
            ..FaultConfig::none()
        };
        let got = run(cfg, 10);
        let bursts: Vec<usize> = got
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == Decision::Burst(d))
            .map(|(i, _)| i + 1)
            .collect();
        // The 4th starts a burst of 2 (4, 5); the 8th another (8, 9).
        assert_eq!(bursts, vec![4, 5, 8, 9]);
    }

    #[test]
    fn certain_drop_wins_over_5xx() {
        let cfg = FaultConfig {
            drop_connection_probability: 1.0,
            append_5xx_probability: 1.0,
            ..FaultConfig::none()
        };
        assert!(run(cfg, 5).iter().all(|d| *d == Decision::Drop));
    }
}
