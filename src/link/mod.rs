//! A trace-driven link emulator: a loopback TCP proxy that replays cellular links, and the
//! ideal completion time an upload over such a link could reach.
//!
//! The pieces, from the inside out:
//!
//! * [`Schedule`]: *when* bytes may leave a bottleneck. A Mahimahi trace (one 1500-byte
//!   opportunity per listed millisecond, looping), a constant rate, looping rate steps, and
//!   outages on top of any of them. Pure arithmetic, no clock; [`Bottleneck`] and
//!   [`departure_times`] put a FIFO queue in front of a schedule and say when each byte leaves.
//! * [`Link`]: a schedule, a one-way propagation delay and a bounded queue.
//!   [`LinkProfile`]: an uplink, a downlink and [`Faults`]; built-in cellular-like profiles
//!   by name ([`LinkProfile::from_name`], [`LinkProfile::names`]) or a Mahimahi trace file
//!   ([`LinkProfile::from_trace_file`], [`LinkProfile::resolve`] for either).
//! * [`LinkProxy`]: a TCP proxy on `127.0.0.1:0` that delays every byte as the profile says,
//!   with one shared bottleneck per direction, TCP backpressure, seeded resets and
//!   handovers, and [`LinkStats`].
//! * [`ideal_time`] / [`IdealTime`]: the best possible completion time of an upload over a
//!   profile (what is counted is listed there), and [`efficiency`] = ideal / actual.
//!
//! ```no_run
//! use std::time::Instant;
//! use chunkwise::link::{IdealTime, LinkProfile, LinkProxy, ProxyOptions, RoundTrips, efficiency};
//!
//! # async fn example(server: std::net::SocketAddr) -> chunkwise::Result<()> {
//! let profile = LinkProfile::from_name("lte")?;
//! println!("{}", profile.summary());
//! let proxy = LinkProxy::start(server, profile.clone(), ProxyOptions::default()).await?;
//! let ideal = IdealTime::compute(&profile, proxy.schedule_time(), 64 << 20, RoundTrips::CHUNKED_UPLOAD);
//! let began = Instant::now();
//! // ... upload 64 MiB through proxy.addr() ...
//! let actual = began.elapsed();
//! println!("efficiency {:.2}, {:?}", efficiency(ideal.total, actual), proxy.stats());
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```
mod ideal;
mod profiles;
mod proxy;
mod schedule;
mod trace;

pub use ideal::{IdealTime, RoundTrips, efficiency, ideal_time, payload_for_ideal};
pub use profiles::{
    DEFAULT_TRACE_DELAY, Faults, GENEROUS_DOWNLINK_BPS, Link, LinkProfile, MIN_QUEUE_BYTES,
    PROFILE_NAMES, QUEUE_DEPTH,
};
pub use proxy::{
    DEFAULT_SOCKET_BUFFER, DEFAULT_TICK, DirectionStats, LinkProxy, LinkStats, ProxyOptions,
};
pub use schedule::{Bottleneck, Enqueued, MAX_RATE_BPS, Schedule, ScheduleError, departure_times};
pub use trace::MTU;
