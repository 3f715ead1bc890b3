//! Retries for the requests of an upload that are not APPENDs of the scheduler (issue 14):
//! the one-shot upload, alt text, subtitles and the STATUS polls that follow a one-shot
//! upload. They take their decisions from the same [`Retrier`] as INIT, APPEND, FINALIZE and
//! STATUS: up to `max_attempts` per request for retryable failures (5xx, 408, 429, timeouts,
//! transport errors), a jittered backoff (at least the server's `Retry-After`, which may not
//! exceed `max_wait`), a budget of [`RetryPolicy::budget`] for one segment, and an
//! unreachable server waited for (no attempt spent) for up to `max_unreachable`.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::events::{ControlRequest, UploadEvent};
use super::retry::{Retrier, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};

/// Sends requests with retries and reports each retry as an event. The decisions are the
/// engine's own ([`Retrier`]), as for INIT, APPEND, FINALIZE and STATUS.
#[derive(Debug)]
pub(crate) struct Calls {
    retrier: Retrier,
    events: UnboundedSender<UploadEvent>,
    /// Retries made so far (unreachable waits included).
    pub(crate) retries: u32,
}

impl Calls {
    pub(crate) fn new(policy: &RetryPolicy, events: UnboundedSender<UploadEvent>) -> Self {
        Calls {
            retrier: Retrier::new(policy),
            events,
            retries: 0,
        }
    }

    fn emit(&self, event: UploadEvent) {
        // The receiver may be gone (handle dropped); nothing to do then.
        let _ = self.events.send(event);
    }

    /// Runs `call` under `timeout` until it succeeds, fails for good, or the retry limits
    /// are spent. `request` names the request in events and errors. Returns the value and
    /// the number of attempts that reached the server or timed out.
    pub(crate) async fn call<'p, T>(
        &mut self,
        request: ControlRequest,
        timeout: Duration,
        mut call: impl FnMut() -> BoxFuture<'p, Result<T>>,
    ) -> Result<(T, u32)> {
        let what = request.name();
        let limit = self.retrier.policy.budget(1);
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the {what} request took longer than its deadline of {timeout:?}"),
                )),
            };
            let e = match result {
                Ok(v) => {
                    self.retrier.reached(started, true);
                    return Ok((v, attempt));
                }
                Err(e) => e,
            };
            let now = Instant::now();
            let text = e.to_string();
            let delay = if e.kind() == ErrorKind::Unreachable {
                // Nothing reached the server: no attempt and no budget spent (RetryPolicy).
                let u = self.retrier.unreachable(e, started, now)?;
                self.emit(UploadEvent::Unreachable {
                    down: u.down,
                    retry_in: u.delay,
                    gives_up_in: u.gives_up_in,
                    error: text,
                });
                u.delay
            } else {
                self.retrier.reached(started, false);
                if let Some(long) = self.retrier.too_long_a_wait(&e, SystemTime::now(), None) {
                    return Err(long.with_source(e));
                }
                let delay = self.retrier.failed(e, attempt, attempt, limit)?;
                self.emit(UploadEvent::ControlRetry {
                    request,
                    attempt,
                    delay,
                    error: text,
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
