//! The link emulator end to end: real Mahimahi traces, the loopback proxy, and properties of
//! the schedules.
#![cfg(feature = "emulator")]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chunkwise::link::{
    Bottleneck, Faults, IdealTime, Link, LinkProfile, LinkProxy, MTU, ProxyOptions, RoundTrips,
    Schedule, departure_times,
};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ===== real traces =====

/// `../shared/traces` relative to the repository root, or `CHUNKWISE_TRACES`.
fn traces_dir() -> PathBuf {
    std::env::var_os("CHUNKWISE_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"))
}

/// Opportunities (ms) in `(from, to]`, counted straight from the file's lines and the looping
/// rule `k*P + t_i`.
fn opportunities_in(stamps: &[u64], from: u64, to: u64) -> u64 {
    let p = *stamps.last().unwrap();
    let mut n = 0;
    for k in 0..=(to / p + 1) {
        n += stamps
            .iter()
            .filter(|&&t| {
                let at = k * p + t;
                at > from && at <= to
            })
            .count() as u64;
    }
    n
}

#[test]
fn real_trace_delivers_its_opportunities_times_mtu() {
    let path = traces_dir().join("TMobile-LTE-short.up");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipping: {} not found", path.display());
        return;
    };
    let stamps: Vec<u64> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let schedule = Schedule::from_mahimahi_str(&text).unwrap();
    assert_eq!(schedule.period(), Some(ms(*stamps.last().unwrap())));
    // Start offsets: the beginning, mid-loop, and one that crosses the 140 s loop boundary.
    for start_ms in [0u64, 70_500, 135_000] {
        let mut q = Bottleneck::new(schedule.clone(), ms(start_ms));
        // A saturated queue: far more than 10 s of this link can carry, all at once.
        let batch = q.enqueue(Duration::ZERO, 1 << 30);
        let delivered = q.units_through(ms(10_000)) - (batch.first_unit - 1);
        let expected = opportunities_in(&stamps, start_ms, start_ms + 10_000) * MTU;
        assert_eq!(delivered, expected, "start {start_ms} ms");
        assert!(
            delivered > 1_000_000,
            "an LTE uplink carries megabytes in 10 s"
        );
        assert_eq!(
            schedule.capacity_between(
                ms(start_ms) + Duration::from_nanos(1),
                ms(start_ms + 10_000) + Duration::from_nanos(1)
            ),
            expected
        );
    }
    // Packet by packet: the first ten packets of a saturated queue leave at the first ten
    // timestamps.
    let arrivals: Vec<_> = (0..10).map(|_| (Duration::ZERO, MTU)).collect();
    let out = departure_times(&schedule, Duration::ZERO, &arrivals);
    let first: Vec<_> = stamps
        .iter()
        .copied()
        .filter(|&t| t > 0)
        .take(10)
        .map(ms)
        .collect();
    assert_eq!(out, first);
}

// ===== loopback proxy =====

/// A server that, per connection, reads an 8-byte length and that many bytes, replies with
/// the count as 8 bytes, and loops until EOF.
async fn sink_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let Ok(n) = s.read_u64().await else { return };
                    let mut left = n;
                    while left > 0 {
                        let want = buf.len().min(left as usize);
                        match s.read(&mut buf[..want]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => left -= k as u64,
                        }
                    }
                    if s.write_u64(n).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `n` bytes through `addr` and waits for the sink's reply.
async fn send(addr: SocketAddr, n: u64) -> io::Result<u64> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_u64(n).await?;
    let chunk = vec![7u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = chunk.len().min(left as usize);
        s.write_all(&chunk[..k]).await?;
        left -= k as u64;
    }
    s.read_u64().await
}

fn constant_profile(bits_per_sec: u64, delay: Duration) -> LinkProfile {
    LinkProfile::new(
        "test",
        Link::constant(bits_per_sec, delay).unwrap(),
        Link::constant(bits_per_sec, delay).unwrap(),
    )
}

/// The expected time to connect, send `n` bytes plus the 8-byte header and get the 8-byte
/// reply: the handshake round trip, then the transfer and its one-way trips.
fn expected(profile: &LinkProfile, n: u64) -> Duration {
    let handshake = RoundTrips {
        before: 1,
        after: 0,
    };
    IdealTime::compute(profile, Duration::ZERO, n + 8, handshake).total
}

/// Slack below the schedule: the measurement starts a little after the proxy's clock.
const EARLY_SLACK: Duration = Duration::from_millis(5);

/// A sink server behind a proxy with a constant 8 Mbit/s (1 MB/s), 20 ms each way link.
async fn proxied_sink() -> (LinkProfile, LinkProxy) {
    proxied(sink_server().await).await
}

/// `server` behind a proxy with a constant 8 Mbit/s (1 MB/s), 20 ms each way link.
async fn proxied(server: SocketAddr) -> (LinkProfile, LinkProxy) {
    let profile = constant_profile(8_000_000, ms(20));
    let proxy = LinkProxy::start(server, profile.clone(), ProxyOptions::default())
        .await
        .unwrap();
    (profile, proxy)
}

/// Absolute allowance above the schedule for short transfers (timer and scheduling jitter).
const LATE_SLACK: Duration = Duration::from_millis(100);

/// `took` is not faster than the schedule allows and at most 50% (or [`LATE_SLACK`]) slower.
fn assert_on_schedule(took: Duration, want: Duration) {
    assert!(
        took + EARLY_SLACK >= want,
        "faster than the link: {took:?} < {want:?}"
    );
    let limit = want.mul_f64(1.5).max(want + LATE_SLACK);
    assert!(took <= limit, "too slow: {took:?} vs {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_delivers_at_the_scheduled_rate() {
    // 1 MB takes 1 s, plus 40 ms for the handshake and 40 ms for the last byte and the reply.
    let (profile, proxy) = proxied_sink().await;
    let n = 1_000_000;
    let began = Instant::now();
    assert_eq!(send(proxy.addr(), n).await.unwrap(), n);
    let took = began.elapsed();
    let want = expected(&profile, n);
    assert!(want > ms(1080) && want < ms(1081), "{want:?}");
    assert_on_schedule(took, want);
    let stats = proxy.stats();
    assert_eq!(stats.up.bytes_enqueued, n + 8);
    assert_eq!(stats.up.bytes_delivered, n + 8);
    assert_eq!(stats.down.bytes_delivered, 8);
    assert_eq!(stats.connections, 1);
    assert_eq!((stats.resets, stats.aborted), (0, 0));
    // The queue (500 kB, half a second at 1 MB/s) filled up, and never held more.
    assert!(stats.up.queue_delay_max > ms(400), "{:?}", stats.up);
    assert!(stats.up.queue_delay_max <= ms(501), "{:?}", stats.up);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_connections_share_one_bottleneck() {
    let (profile, proxy) = proxied_sink().await;
    let addr = proxy.addr();
    let began = Instant::now();
    let (a, b) = tokio::join!(send(addr, 500_000), send(addr, 500_000));
    assert_eq!((a.unwrap(), b.unwrap()), (500_000, 500_000));
    let took = began.elapsed();
    // Together they need the link for 1 MB (plus two 8-byte headers): about 1.08 s, not the
    // 0.58 s of one of them.
    let want = expected(&profile, 1_000_008);
    assert_on_schedule(took, want);
    assert_eq!(proxy.stats().connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_offset_picks_the_point_of_the_schedule() {
    let server = sink_server().await;
    // 0.8 Mbit/s for 1 s, then 80 Mbit/s for 1 s (looping); 5 ms each way.
    let up = Schedule::steps([(ms(1000), 800_000), (ms(1000), 80_000_000)]).unwrap();
    let profile = LinkProfile::new(
        "slow-then-fast",
        Link::new(up, ms(5), 1 << 20),
        Link::constant(80_000_000, ms(5)).unwrap(),
    );
    // Starting in the fast second: 200 kB take 20 ms (+ 20 ms of round trips), not the 2 s
    // of the slow start.
    let options = ProxyOptions::default().with_start_offset(ms(1000));
    let proxy = LinkProxy::start(server, profile.clone(), options)
        .await
        .unwrap();
    assert!(proxy.schedule_time() >= ms(1000));
    let began = Instant::now();
    assert_eq!(send(proxy.addr(), 200_000).await.unwrap(), 200_000);
    let took = began.elapsed();
    let want = IdealTime::compute(
        &profile,
        ms(1000),
        200_008,
        RoundTrips {
            before: 1,
            after: 0,
        },
    )
    .total;
    assert!(want < ms(50), "{want:?}");
    assert_on_schedule(took, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_faults_break_connections() {
    let server = sink_server().await;
    // A reset every 256 KiB on average; 4 MiB at 80 Mbit/s cannot get through.
    let profile = constant_profile(80_000_000, ms(5)).with_faults(Faults {
        resets_per_mib: 4.0,
        reset_at: Vec::new(),
    });
    let proxy = LinkProxy::start(server, profile, ProxyOptions::default().with_seed(42))
        .await
        .unwrap();
    let result = send(proxy.addr(), 4 << 20).await;
    let err = result.expect_err("the connection must be reset");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        "{err:?}"
    );
    let stats = proxy.stats();
    assert_eq!(stats.resets, 1);
    assert!(stats.up.bytes_enqueued < 4 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_resets_every_open_connection() {
    let server = sink_server().await;
    let profile = constant_profile(8_000_000, ms(5)).with_faults(Faults {
        resets_per_mib: 0.0,
        reset_at: vec![ms(200)],
    });
    let proxy = LinkProxy::start(server, profile, ProxyOptions::default())
        .await
        .unwrap();
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    // A small exchange works before the handover.
    a.write_u64(3).await.unwrap();
    a.write_all(b"abc").await.unwrap();
    assert_eq!(a.read_u64().await.unwrap(), 3);
    let mut byte = [0u8; 1];
    let began = Instant::now();
    let ea = a.read(&mut byte).await.expect_err("reset");
    let eb = b.read(&mut byte).await.expect_err("reset");
    assert_eq!(ea.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(eb.kind(), io::ErrorKind::ConnectionReset);
    assert!(began.elapsed() < ms(1000));
    let stats = proxy.stats();
    assert_eq!((stats.connections, stats.resets), (2, 2));
    // New connections after the handover work again.
    assert_eq!(send(proxy.addr(), 10).await.unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_pass_through_and_reuse_the_connection() {
    use axum::{Router, body::Bytes, routing::post};
    let app = Router::new().route(
        "/upload",
        post(|body: Bytes| async move { body.len().to_string() }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (profile, proxy) = proxied(server).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/upload", proxy.addr());
    let began = Instant::now();
    for _ in 0..2 {
        let reply = client
            .post(&url)
            .body(vec![1u8; 100_000])
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success());
        assert_eq!(reply.text().await.unwrap(), "100000");
    }
    let took = began.elapsed();
    // Two 100 kB bodies (plus headers) at 1 MB/s with a round trip each, one handshake.
    let floor = ms(200) + profile.rtt() * 3;
    assert_on_schedule(took, floor);
    let stats = proxy.stats();
    assert_eq!(stats.connections, 1, "keep-alive reuses the connection");
    assert!(stats.up.bytes_delivered > 200_000);
}

// ===== properties =====

/// A schedule from a generated description: a small trace, a constant or steps, with or
/// without an outage.
fn schedule_strategy() -> impl Strategy<Value = Schedule> {
    let trace = prop::collection::vec(0u64..40, 1..16).prop_map(|mut v| {
        v.sort_unstable();
        if *v.last().unwrap() == 0 {
            v.push(1);
        }
        let text: String = v.iter().map(|t| format!("{t}\n")).collect();
        Schedule::from_mahimahi_str(&text).unwrap()
    });
    let constant = (1u64..20_000_000).prop_map(|r| Schedule::constant(r).unwrap());
    let steps = prop::collection::vec((1u64..30, 0u64..20_000_000), 1..6).prop_map(|v| {
        let mut v: Vec<(Duration, u64)> = v.into_iter().map(|(d, r)| (ms(d), r)).collect();
        v.push((ms(5), 1_000_000)); // never all zero
        Schedule::steps(v).unwrap()
    });
    let base = prop_oneof![trace, constant, steps];
    (base, prop::option::of((0u64..60, 1u64..30))).prop_map(|(s, outage)| match outage {
        Some((start, len)) => s.with_outage(ms(start), ms(len)),
        None => s,
    })
}

fn arrivals_strategy() -> impl Strategy<Value = Vec<(Duration, u64)>> {
    prop::collection::vec((0u64..20_000, 0u64..6_000), 1..12).prop_map(|v| {
        let mut t = 0;
        v.into_iter()
            .map(|(gap_us, bytes)| {
                t += gap_us;
                (Duration::from_micros(t), bytes)
            })
            .collect()
    })
}

const NS: Duration = Duration::from_nanos(1);

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(0x11_4b), ..ProptestConfig::default() })]

    /// `time_of` and `capacity_before` are monotone and exact inverses.
    #[test]
    fn capacity_and_time_are_inverse(s in schedule_strategy(), ys in prop::collection::vec(1u64..200_000, 1..20)) {
        let mut ys = ys;
        ys.sort_unstable();
        let mut prev = Duration::ZERO;
        for y in ys {
            let t = s.time_of(y);
            prop_assert!(t >= prev);
            prev = t;
            prop_assert!(s.capacity_before(t) < y);
            prop_assert!(s.capacity_before(t + NS) >= y);
        }
    }

    /// A FIFO queue never delivers more than the schedule offers, leaves nothing unused that it
    /// could have used, and keeps order.
    #[test]
    fn queue_never_beats_the_schedule(
        s in schedule_strategy(),
        start_us in 0u64..100_000,
        arrivals in arrivals_strategy(),
    ) {
        let start = Duration::from_micros(start_us);
        let out = departure_times(&s, start, &arrivals);
        let mut prev = Duration::ZERO;
        for (j, (&(at, bytes), &dep)) in arrivals.iter().zip(&out).enumerate() {
            if bytes == 0 {
                prop_assert_eq!(dep, at);
                continue;
            }
            prop_assert!(dep > at, "a byte leaves after it arrives");
            prop_assert!(dep >= prev, "FIFO order");
            prev = dep;
            // Batches i..=j arrived at or after `a_i` and all left by `dep`: they fit in the
            // capacity offered in (a_i, dep]. And some i shows that `dep` cannot be earlier.
            let mut tight = false;
            for i in 0..=j {
                let sum: u64 = arrivals[i..=j].iter().map(|a| a.1).sum();
                let from = start + arrivals[i].0 + NS;
                prop_assert!(sum <= s.capacity_between(from, start + dep + NS));
                tight |= sum > s.capacity_between(from, start + dep);
            }
            prop_assert!(tight, "departure {j} could have been earlier");
        }
    }
}
