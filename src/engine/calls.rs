//! Retries for the requests of an upload that are not APPENDs of the scheduler (issue 14):
//! the one-shot upload, alt text, subtitles and the STATUS polls that follow a one-shot
//! upload. They use the engine's [`RetryPolicy`] and [`Backoff`] exactly as INIT and FINALIZE
//! do: up to `max_attempts` per request for retryable failures (5xx, 408, 429, timeouts,
//! transport errors), a jittered backoff (at least the server's `Retry-After`), an
//! upload-wide budget of [`RetryPolicy::budget`] for one segment, and an unreachable server
//! waited for (no attempt spent) for up to `max_unreachable`.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::events::{ControlRequest, UploadEvent};
use super::retry::{Backoff, RetryBudget, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};

/// Sends requests with retries and reports each retry as an event.
#[derive(Debug)]
pub(crate) struct Calls {
    policy: RetryPolicy,
    backoff: Backoff,
    budget: RetryBudget,
    events: UnboundedSender<UploadEvent>,
    /// Retries made so far (unreachable waits included).
    pub(crate) retries: u32,
}

impl Calls {
    pub(crate) fn new(policy: &RetryPolicy, events: UnboundedSender<UploadEvent>) -> Self {
        Calls {
            policy: policy.clone(),
            backoff: Backoff::new(policy),
            budget: RetryBudget::new(),
            events,
            retries: 0,
        }
    }

    fn emit(&self, event: UploadEvent) {
        // The receiver may be gone (handle dropped); nothing to do then.
        let _ = self.events.send(event);
    }

    /// Runs `call` under `timeout` until it succeeds, fails for good, or the retry limits
    /// are spent. `what` names the request in events and errors. Returns the value and the
    /// number of attempts that reached the server or timed out.
    pub(crate) async fn call<'p, T>(
        &mut self,
        request: ControlRequest,
        timeout: Duration,
        mut call: impl FnMut() -> BoxFuture<'p, Result<T>>,
    ) -> Result<(T, u32)> {
        let what = request.name();
        let limit = self.policy.budget(1);
        let mut attempt = 1;
        let mut down_since: Option<Instant> = None;
        let mut probes = 0;
        loop {
            let result = match tokio::time::timeout(timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the {what} request took longer than its deadline of {timeout:?}"),
                )),
            };
            let e = match result {
                Ok(v) => return Ok((v, attempt)),
                Err(e) => e,
            };
            let delay = if e.kind() == ErrorKind::Unreachable {
                // Nothing reached the server: no attempt and no budget spent (RetryPolicy).
                let now = Instant::now();
                let since = *down_since.get_or_insert(now);
                let down = now.saturating_duration_since(since);
                let max = self.policy.max_unreachable;
                if down >= max {
                    return Err(Error::new(
                        ErrorKind::Unreachable,
                        format!(
                            "the server could not be reached for {down:.1?} (retry \
                             max_unreachable is {max:?}): check the network and the base URL"
                        ),
                    )
                    .with_source(e));
                }
                let delay = self.backoff.delay(probes, false, None).min(max - down);
                probes += 1;
                self.emit(UploadEvent::Unreachable {
                    down,
                    retry_in: delay,
                    gives_up_in: max - down,
                    error: e.to_string(),
                });
                delay
            } else {
                down_since = None;
                if !e.is_retryable() || attempt >= self.policy.max_attempts {
                    return Err(if attempt > 1 {
                        e.with_attempts(attempt)
                    } else {
                        e
                    });
                }
                if !self.budget.try_spend(limit) {
                    return Err(Error::new(
                        ErrorKind::RetryBudgetExhausted,
                        format!(
                            "{} retries of the {what} request are spent; the link or server \
                             is failing too often",
                            self.budget.spent()
                        ),
                    )
                    .with_attempts(attempt)
                    .with_source(e));
                }
                let delay = self
                    .backoff
                    .delay(attempt - 1, e.is_throttled(), e.retry_after());
                self.emit(UploadEvent::ControlRetry {
                    request,
                    attempt,
                    delay,
                    error: e.to_string(),
                });
                attempt += 1;
                delay
            };
            tracing::debug!(request = what, ?delay, "retrying");
            self.retries += 1;
            tokio::time::sleep(delay).await;
        }
    }
}
