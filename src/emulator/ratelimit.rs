//! Per-user rate limits with X's fixed windows and `x-rate-limit-*` headers (protocol.md §5).
//!
//! Hand-written rather than built on `governor`: X reports a request count per fixed window
//! and the epoch second at which the window resets, which a GCRA limiter does not model.

use super::config::RateLimitConfig;
use super::state::{Clock, later};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

/// A rate-limited endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    V1Post,
    V1Get,
    V2Initialize,
    V2Append,
    V2Finalize,
    V2Status,
    V2Upload,
    V2Metadata,
    V2SubtitlesCreate,
    V2SubtitlesDelete,
    V1Metadata,
    V1SubtitlesCreate,
    V1SubtitlesDelete,
}

/// What the three headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateView {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset_epoch_secs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    used: u32,
}

/// Fixed-window counters per (user, endpoint).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    cfg: RateLimitConfig,
    windows: Mutex<HashMap<(u64, Endpoint), Window>>,
}

impl RateLimiter {
    pub(crate) fn new(cfg: RateLimitConfig) -> Self {
        RateLimiter {
            cfg,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, ep: Endpoint) -> u32 {
        match ep {
            Endpoint::V1Post => self.cfg.v1_post,
            Endpoint::V1Get => self.cfg.v1_get,
            Endpoint::V2Initialize => self.cfg.v2_initialize,
            Endpoint::V2Append => self.cfg.v2_append,
            Endpoint::V2Finalize => self.cfg.v2_finalize,
            Endpoint::V2Status => self.cfg.v2_status,
            Endpoint::V2Upload => self.cfg.v2_upload,
            Endpoint::V2Metadata => self.cfg.v2_metadata,
            Endpoint::V2SubtitlesCreate | Endpoint::V2SubtitlesDelete => self.cfg.v2_subtitles,
            Endpoint::V1Metadata => self.cfg.v1_metadata,
            Endpoint::V1SubtitlesCreate | Endpoint::V1SubtitlesDelete => self.cfg.v1_subtitles,
        }
    }

    /// Counts one request of `user` on `ep`. Returns whether it is allowed and the headers.
    pub(crate) fn check(&self, user: u64, ep: Endpoint, clock: &Clock) -> (bool, RateView) {
        let now = clock.now();
        let limit = self.limit(ep);
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = windows.entry((user, ep)).or_insert(Window {
            started: now,
            used: 0,
        });
        if now >= later(w.started, self.cfg.window) {
            *w = Window {
                started: now,
                used: 0,
            };
        }
        let allowed = w.used < limit;
        if allowed {
            w.used += 1;
        }
        let view = RateView {
            limit,
            remaining: limit.saturating_sub(w.used),
            reset_epoch_secs: clock.epoch_secs(later(w.started, self.cfg.window)),
        };
        (allowed, view)
    }

    /// The headers for a request that was not counted (not authenticated): a fresh window.
    pub(crate) fn fresh(&self, ep: Endpoint, clock: &Clock) -> RateView {
        let limit = self.limit(ep);
        RateView {
            limit,
            remaining: limit,
            reset_epoch_secs: clock.epoch_secs(later(clock.now(), self.cfg.window)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fixed_window_counts_and_resets() {
        let clock = Clock::new();
        let cfg = RateLimitConfig {
            window: Duration::from_secs(60),
            v2_append: 2,
            ..RateLimitConfig::default()
        };
        let rl = RateLimiter::new(cfg);
        let (ok, v) = rl.check(1, Endpoint::V2Append, &clock);
        assert!(ok);
        assert_eq!((v.limit, v.remaining), (2, 1));
        let reset = v.reset_epoch_secs;
        assert!(rl.check(1, Endpoint::V2Append, &clock).0);
        let (ok, v) = rl.check(1, Endpoint::V2Append, &clock);
        assert!(!ok);
        assert_eq!((v.remaining, v.reset_epoch_secs), (0, reset));
        // Another user and another endpoint have their own windows.
        assert!(rl.check(2, Endpoint::V2Append, &clock).0);
        assert!(rl.check(1, Endpoint::V2Finalize, &clock).0);
        tokio::time::advance(Duration::from_secs(60)).await;
        let (ok, v) = rl.check(1, Endpoint::V2Append, &clock);
        assert!(ok);
        assert_eq!(v.remaining, 1);
        assert_eq!(v.reset_epoch_secs, reset + 60);
    }
}
