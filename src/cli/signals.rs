//! Ctrl-C, SIGTERM and SIGHUP during an upload: stop starting requests, let the APPENDs in
//! flight finish for a bounded time, save the checkpoint, say how to resume, and exit with
//! the shell's code for the signal (130, 143, 129).

use std::fmt;
use std::time::Duration;

/// How long the APPENDs in flight may take to finish after an interrupt before they are
/// dropped: 3 s.
///
/// Source: reasonable default; a person who pressed Ctrl-C expects the prompt back within a
/// few seconds, and at the controller's 4 s target chunk time an APPEND in flight is on
/// average half done, so most finish and are not sent again. A second interrupt drops them
/// at once; a service manager's stop timeout (systemd: 90 s) is far longer.
pub(crate) const INTERRUPT_GRACE: Duration = Duration::from_secs(3);

/// A signal that stopped the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signal {
    /// Its name, such as `SIGINT`.
    pub(crate) name: &'static str,
    /// Its number; the exit code is 128 plus it, as shells report a death by signal.
    pub(crate) number: u8,
}

impl Signal {
    const INT: Signal = Signal {
        name: "SIGINT",
        number: 2,
    };
    #[cfg(unix)]
    const TERM: Signal = Signal {
        name: "SIGTERM",
        number: 15,
    };
    #[cfg(unix)]
    const HUP: Signal = Signal {
        name: "SIGHUP",
        number: 1,
    };

    /// The exit code: 128 + the signal number (130 for SIGINT, 143 for SIGTERM, 129 for
    /// SIGHUP).
    pub(crate) fn exit_code(self) -> u8 {
        128 + self.number
    }
}

/// The error a command ends with when a signal stopped it: what was left and how to go on.
#[derive(Debug)]
pub(crate) struct Interrupted {
    /// The signal.
    pub(crate) signal: Signal,
    /// What happened to the upload, and how to resume it.
    pub(crate) what: String,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}: {}", self.signal.name, self.what)
    }
}

impl std::error::Error for Interrupted {}

/// The interrupt signals, listened to from the start of a command to its end, so that one
/// that arrives between two uploads (`resume --all`) is not lost.
#[derive(Debug)]
pub(crate) struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Starts listening (and so replaces the default action, death, of these signals).
    ///
    /// # Errors
    ///
    /// The signal handlers cannot be installed.
    pub(crate) fn listen() -> anyhow::Result<Interrupts> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// The next interrupt.
    pub(crate) async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Signal::INT,
                _ = self.term.recv() => Signal::TERM,
                _ = self.hup.recv() => Signal::HUP,
            }
        }
        #[cfg(not(unix))]
        {
            // Without a handler Ctrl-C keeps its default action; this never resolves then.
            match tokio::signal::ctrl_c().await {
                Ok(()) => Signal::INT,
                Err(_) => std::future::pending().await,
            }
        }
    }
}
