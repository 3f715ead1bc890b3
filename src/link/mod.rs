//! A trace-driven link emulator: a loopback TCP proxy that replays cellular links.
mod schedule;
mod trace;

pub use schedule::{
    Bottleneck, Enqueued, MAX_RATE_BPS, Schedule, ScheduleError, departure_times,
};
pub use trace::MTU;
