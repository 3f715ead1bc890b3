//! chunkwise's benchmarks: one criterion entry, one `define(c)` per topic.
//!
//! `cargo bench --bench engine` runs them; CI builds them (`cargo bench --no-run`).

use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

/// The adaptive controller's per-segment decision: it must stay far below a microsecond.
mod controller {
    use chunkwise::limits::MIB;
    use chunkwise::scheduler::{
        AdaptiveConfig, AdaptiveStrategy, Observation, Outcome, PlanContext, Strategy,
    };
    use criterion::{Criterion, black_box};
    use std::time::Duration;
    use tokio::time::Instant;

    /// A pipelined steady state: every 2 s a 4 MiB APPEND that took 4 s with 2 in flight
    /// finishes and the next one is planned and started.
    struct Steady {
        s: AdaptiveStrategy,
        now: Instant,
        index: u32,
    }

    impl Steady {
        fn new() -> Self {
            let mut st = Steady {
                s: AdaptiveStrategy::new(AdaptiveConfig::default()).expect("valid defaults"),
                now: Instant::now(),
                index: 0,
            };
            for _ in 0..100 {
                st.cycle(true);
            }
            st
        }

        /// One completion and the next decision; `start` also starts the next request (which
        /// charges the caps and records the start).
        fn cycle(&mut self, start: bool) -> (u64, usize) {
            let finished = self.now + Duration::from_secs(2);
            self.s.observe(&Observation {
                segment_index: self.index,
                bytes: 4 * MIB,
                started: finished - Duration::from_secs(4),
                finished,
                outcome: Outcome::Success,
                in_flight: 2,
                app_limited: false,
            });
            self.now = finished;
            self.index = self.index.wrapping_add(1);
            let ctx = PlanContext {
                now: finished,
                remaining_bytes: 4000 * MIB,
                remaining_segments: 1000,
                min_chunk: 4 * MIB + 1,
                max_chunk: 5 * MIB,
            };
            let chunk = self.s.chunk_size(&ctx);
            let n = self.s.max_in_flight(finished);
            if start {
                self.s.request_deadline(finished, chunk);
            }
            (chunk, n)
        }
    }

    pub(crate) fn define(c: &mut Criterion) {
        let mut st = Steady::new();
        c.bench_function("controller/observe+chunk_size+max_in_flight/steady", |b| {
            b.iter(|| {
                let (chunk, n) = black_box(st.cycle(false));
                assert!((4 * MIB..=5 * MIB).contains(&chunk) && n >= 1);
            })
        });
        let mut st = Steady::new();
        c.bench_function("controller/full-cycle-with-request_deadline/steady", |b| {
            b.iter(|| {
                let (chunk, n) = black_box(st.cycle(true));
                assert!((4 * MIB..=5 * MIB).contains(&chunk) && n >= 1);
            })
        });
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

fn all(c: &mut Criterion) {
    controller::define(c);
}

criterion_group! {
    name = benches;
    config = config();
    targets = all
}
criterion_main!(benches);
