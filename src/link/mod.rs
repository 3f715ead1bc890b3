//! A trace-driven link emulator: a loopback TCP proxy that replays cellular links.
mod ideal;
mod profiles;
mod schedule;
mod trace;

pub use ideal::{IdealTime, RoundTrips, efficiency, ideal_time};
pub use profiles::{
    DEFAULT_TRACE_DELAY, Faults, GENEROUS_DOWNLINK_BPS, Link, LinkProfile, MIN_QUEUE_BYTES,
    PROFILE_NAMES, QUEUE_DEPTH,
};
pub use schedule::{
    Bottleneck, Enqueued, MAX_RATE_BPS, Schedule, ScheduleError, departure_times,
};
pub use trace::MTU;
