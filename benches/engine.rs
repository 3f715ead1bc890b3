//! Criterion benches of chunkwise: micro-benches of the pure pieces (link schedules and
//! queues, segment planning, OAuth signing) and end-to-end uploads to the local emulator over
//! loopback.
//!
//! `cargo bench --bench engine` measures; `cargo bench --bench engine -- --test` runs every
//! bench once as a test (each asserts its result). Bench ids are hierarchical
//! (`link/schedule/time_of/trace`), so `cargo bench -- link/` runs one topic.
//!
//! The strategy comparison over emulated cellular links is not here but in
//! `chunkwise bench` (see BENCHMARKS.md): it takes minutes per cell, not microseconds.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;

/// Warm-up per bench.
///
/// Source: reasonable default; these benches are short and stable, and `cargo bench` over the
/// whole file should stay within a couple of minutes on the project's 2-core machine.
const WARM_UP: Duration = Duration::from_millis(500);

/// Measurement time per bench.
///
/// Source: reasonable default (see [`WARM_UP`]).
const MEASUREMENT: Duration = Duration::from_secs(2);

/// Samples per bench (criterion's minimum is 10).
///
/// Source: reasonable default (see [`WARM_UP`]); the end-to-end group overrides it.
const SAMPLES: usize = 30;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
        .sample_size(SAMPLES)
        .without_plots()
        .configure_from_args();
    link::define(&mut c);
    plan::define(&mut c);
    auth::define(&mut c);
    protocol::define(&mut c);
    controller::define(&mut c);
    e2e::define(&mut c);
    c.final_summary();
}

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
                self.s.start_attempt(finished, chunk);
            }
            (chunk, n)
        }
    }

    pub(super) fn define(c: &mut Criterion) {
        let mut st = Steady::new();
        c.bench_function("controller/observe+chunk_size+max_in_flight/steady", |b| {
            b.iter(|| {
                let (chunk, n) = black_box(st.cycle(false));
                assert!((4 * MIB..=5 * MIB).contains(&chunk) && n >= 1);
            })
        });
        let mut st = Steady::new();
        c.bench_function("controller/full-cycle-with-start_attempt/steady", |b| {
            b.iter(|| {
                let (chunk, n) = black_box(st.cycle(true));
                assert!((4 * MIB..=5 * MIB).contains(&chunk) && n >= 1);
            })
        });
    }
}

/// Link emulation arithmetic: schedules and the bottleneck queue.
mod link {
    use super::*;
    use chunkwise::link::{Bottleneck, MTU, Schedule};

    /// A synthetic Mahimahi trace: 10 s of 1 to 3 packets per millisecond in a fixed
    /// pattern (about 12 Mbit/s), like the LTE traces in `shared/traces`.
    pub(super) fn trace_schedule() -> Schedule {
        let mut text = String::new();
        for ms in 1..=10_000u32 {
            for _ in 0..(1 + ms % 3) {
                text.push_str(&ms.to_string());
                text.push('\n');
            }
        }
        Schedule::from_mahimahi_str(&text).expect("valid trace")
    }

    fn steps_with_outage() -> Schedule {
        let s = |secs| Duration::from_secs(secs);
        Schedule::steps([(s(10), 20_000_000), (s(20), 2_000_000), (s(30), 20_000_000)])
            .expect("valid steps")
            .with_outage(s(70), s(20))
    }

    pub(super) fn define(c: &mut Criterion) {
        let constant = Schedule::constant(10_000_000).expect("valid rate");
        let trace = trace_schedule();
        let steps = steps_with_outage();

        let mut g = c.benchmark_group("link/schedule");
        for (name, schedule) in [
            ("constant", &constant),
            ("trace", &trace),
            ("steps_outage", &steps),
        ] {
            // A byte some loops into the schedule, so loop arithmetic is exercised.
            let byte = 300_000_000u64;
            g.bench_function(format!("time_of/{name}"), |b| {
                b.iter(|| {
                    let t = schedule.time_of(black_box(byte));
                    assert!(t > Duration::ZERO);
                    t
                })
            });
            let at = Duration::from_millis(123_456);
            g.bench_function(format!("capacity_before/{name}"), |b| {
                b.iter(|| {
                    let bytes = schedule.capacity_before(black_box(at));
                    assert!(bytes > 0);
                    bytes
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group("link/bottleneck");
        g.bench_function("enqueue/trace/mtu_every_ms", |b| {
            let mut q = Bottleneck::new(trace.clone(), Duration::ZERO);
            let mut at = Duration::ZERO;
            b.iter(|| {
                at += Duration::from_millis(1);
                let e = q.enqueue(black_box(at), MTU);
                assert!(e.last_departure >= at);
                e
            })
        });
        g.bench_function("enqueue/trace/64KiB_batches", |b| {
            let mut q = Bottleneck::new(trace.clone(), Duration::ZERO);
            let mut at = Duration::ZERO;
            b.iter(|| {
                at += Duration::from_millis(40);
                let e = q.enqueue(black_box(at), 64 * 1024);
                assert!(e.last_departure >= at);
                e
            })
        });
        g.finish();
    }
}

/// Segment planning.
mod plan {
    use super::*;
    use chunkwise::engine::Plan;
    use chunkwise::limits::{DEFAULT_MAX_APPEND_BYTES, MIB};
    use chunkwise::scheduler::FixedStrategy;

    pub(super) fn define(c: &mut Criterion) {
        let mut g = c.benchmark_group("plan");
        // A 512 MiB video in 1 MiB segments: 512 `next_segment` calls per iteration.
        g.bench_function("next_segment/512MiB_in_1MiB", |b| {
            let now = tokio::time::Instant::now();
            b.iter(|| {
                let mut plan = Plan::new(512 * MIB, DEFAULT_MAX_APPEND_BYTES).expect("valid plan");
                let mut s = FixedStrategy::new(MIB, 3, Duration::from_secs(120));
                let mut n = 0u32;
                while plan.next_segment(&mut s, black_box(now)).is_some() {
                    n += 1;
                }
                assert_eq!(n, 512);
                plan
            })
        });
        g.finish();
    }
}

/// OAuth 1.0a request signing and its verification (what the emulator does per request).
mod auth {
    use super::*;
    use chunkwise::Credentials;
    use chunkwise::auth::verify_oauth1;

    pub(super) fn define(c: &mut Criterion) {
        let creds = chunkwise::emulator::demo_credentials();
        let url: url::Url = "https://api.x.com/2/media/upload/1234567890123456789/append"
            .parse()
            .expect("valid url");
        let form = vec![
            ("command".to_string(), "INIT".to_string()),
            ("total_bytes".to_string(), "536870912".to_string()),
            ("media_type".to_string(), "video/mp4".to_string()),
        ];
        let mut g = c.benchmark_group("auth/oauth1");
        g.bench_function("authorization/append", |b| {
            b.iter(|| {
                let h = creds.authorization("POST", black_box(&url), &[]);
                assert!(h.starts_with("OAuth "));
                h
            })
        });
        g.bench_function("authorization/init_form", |b| {
            b.iter(|| {
                let h = creds.authorization("POST", black_box(&url), black_box(&form));
                assert!(h.contains("oauth_signature="));
                h
            })
        });
        let Credentials::OAuth1(expected) = creds.clone() else {
            panic!("the demo credentials are OAuth 1.0a")
        };
        let header = creds.authorization("POST", &url, &form);
        g.bench_function("verify/init_form", |b| {
            b.iter(|| {
                assert!(verify_oauth1(
                    &expected,
                    "POST",
                    black_box(&url),
                    &form,
                    black_box(&header)
                ));
            })
        });
        g.finish();
    }
}

/// The X client's request building and response parsing, through its public API: STATUS
/// round trips to the emulator over loopback (no link emulation).
mod protocol {
    use super::*;
    use chunkwise::emulator::{
        Emulator, EmulatorHandle, ProcessingConfig, ProcessingTimeline, RateLimitConfig,
        demo_credentials,
    };
    use chunkwise::protocol::{ApiVersion, InitRequest, ProcessingState, UploadProtocol, XClient};
    use chunkwise::{MediaCategory, limits::MIB};

    /// INIT of a 1 MiB video.
    fn init_request() -> InitRequest {
        InitRequest {
            total_bytes: MIB,
            media_type: "video/mp4".into(),
            media_category: Some(MediaCategory::TweetVideo),
            additional_owners: Vec::new(),
            shared: None,
        }
    }

    /// An emulator for benches: no rate limits (a bench sends thousands of requests in a
    /// window), and processing that takes no time, so FINALIZE answers `succeeded` and the
    /// engine makes no STATUS polls (each would wait at least a second).
    pub(super) async fn start_emulator() -> EmulatorHandle {
        let unlimited = RateLimitConfig {
            v1_post: u32::MAX,
            v1_get: u32::MAX,
            v2_initialize: u32::MAX,
            v2_append: u32::MAX,
            v2_finalize: u32::MAX,
            v2_status: u32::MAX,
            v2_upload: u32::MAX,
            ..RateLimitConfig::default()
        };
        let processing = ProcessingConfig {
            timeline: ProcessingTimeline::Timed {
                pending: Duration::ZERO,
                in_progress: Duration::ZERO,
            },
            ..ProcessingConfig::default()
        };
        Emulator::builder()
            .credentials(demo_credentials())
            .rate_limits(unlimited)
            .processing(processing)
            .start()
            .await
            .expect("emulator starts")
    }

    /// A v2 client of `emulator` with the demo credentials.
    pub(super) fn client(emulator: &EmulatorHandle) -> XClient {
        XClient::builder()
            .api(ApiVersion::V2)
            .base_url(emulator.base_url())
            .credentials(demo_credentials())
            .build()
            .expect("client builds")
    }

    pub(super) fn define(c: &mut Criterion) {
        let rt = super::e2e::runtime();
        let emulator = rt.block_on(start_emulator());
        let client = client(&emulator);
        let media = rt.block_on(async {
            let init = client.init(&init_request()).await.expect("INIT succeeds");
            init.media_id
        });

        let mut g = c.benchmark_group("protocol/v2");
        g.bench_function("processing_state/from_wire", |b| {
            b.iter(|| {
                let s = ProcessingState::from_wire(black_box("in_progress"));
                assert_eq!(s, ProcessingState::InProgress);
                s
            })
        });
        // INIT per iteration: signing, the request, the emulator's checks and the parse of
        // `data.id`, `media_key` and `expires_after_secs`.
        g.bench_function("init/loopback", |b| {
            b.to_async(&rt).iter(|| async {
                let r = client.init(&init_request()).await.expect("INIT succeeds");
                assert!(r.media_key.is_some());
                r
            })
        });
        // STATUS of media that is not finalized is a 400 with a problem body: the error path
        // of the parser (status code, `errors[].message`).
        g.bench_function("status/loopback_error", |b| {
            b.to_async(&rt).iter(|| async {
                let e = client.status(&media).await.expect_err("not finalized");
                assert!(e.server_message().is_some(), "{e}");
                e
            })
        });
        g.finish();
        rt.block_on(emulator.shutdown());
    }
}

/// Whole uploads through the engine to the emulator over loopback.
mod e2e {
    use super::*;
    use chunkwise::limits::MIB;
    use chunkwise::{Engine, EngineConfig, MediaCategory, MediaSpec, Source};
    use criterion::Throughput;
    use std::sync::Arc;

    /// Size of the end-to-end upload.
    ///
    /// Source: issue 3 ("a 16 MiB upload to the emulator over loopback"); 4 segments of the
    /// default 4 MiB.
    const E2E_BYTES: u64 = 16 * MIB;

    /// Samples of the end-to-end group (criterion's minimum).
    ///
    /// Source: reasonable default; one iteration moves 16 MiB through HTTP twice (client and
    /// emulator), so fewer, longer samples keep the group short.
    const E2E_SAMPLES: usize = 10;

    pub(super) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    pub(super) fn define(c: &mut Criterion) {
        let rt = runtime();
        let emulator = rt.block_on(super::protocol::start_emulator());
        let data = bytes::Bytes::from(
            (0..E2E_BYTES)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect::<Vec<u8>>(),
        );
        let engine = |config: EngineConfig| {
            Engine::new(Arc::new(super::protocol::client(&emulator)), config).expect("valid config")
        };
        let engines = [
            ("default", engine(EngineConfig::default())),
            (
                "1MiB_x3",
                engine(EngineConfig::default().with_fixed_strategy(
                    chunkwise::scheduler::FixedStrategy::new(MIB, 3, Duration::from_secs(120)),
                )),
            ),
        ];

        let mut g = c.benchmark_group("e2e/emulator");
        g.sample_size(E2E_SAMPLES);
        g.throughput(Throughput::Bytes(E2E_BYTES));
        for (name, engine) in &engines {
            g.bench_function(format!("16MiB/{name}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let spec = MediaSpec::new("video/mp4").with_category(MediaCategory::TweetVideo);
                    let report = engine
                        .upload(Source::bytes(data.clone()), spec)
                        .join()
                        .await
                        .expect("upload succeeds");
                    assert_eq!(report.total_bytes, E2E_BYTES);
                    assert_eq!(report.segments as u64, E2E_BYTES.div_ceil(report.chunk_max));
                    report
                })
            });
        }
        g.finish();
        rt.block_on(emulator.shutdown());
    }
}
