//! The link proxy: a loopback TCP proxy whose two directions are emulated links; the design
//! is documented on [`LinkProxy`].

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until};

use super::profiles::{LinkProfile, MIB_F64};
use super::schedule::{Bottleneck, Enqueued};
use crate::{Error, ErrorKind, Result};

/// Default kernel send and receive buffer of the proxy's sockets, in bytes.
///
/// Source: small enough that a sender is pushed back within a few tens of kilobytes of the
/// emulated queue (Linux doubles the value it is given), large enough for loopback reads of
/// 32 KiB at 200 Mbit/s (about 800 a second).
pub const DEFAULT_SOCKET_BUFFER: u32 = 32 * 1024;

/// Default minimum time between two writes of one connection direction.
///
/// Source: the task's "coarse timer batching: deliver all bytes due in each ~1 ms tick"; 1 ms
/// is also the resolution of tokio's timer and of Mahimahi traces.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// The largest read from a socket into the emulated queue.
///
/// Source: 64 KiB, the largest TCP window without scaling; the writer delivers a read batch
/// byte-exactly anyway, so the size only trades syscalls against memory.
const READ_CHUNK: usize = 64 * 1024;

/// The most bytes one connection direction may hold after leaving the bottleneck but before
/// being written (in propagation, or because the receiver does not read).
///
/// Source: above the bandwidth-delay product of any profile here (200 Mbit/s × 1 s = 25 MB),
/// so it never limits throughput; it only bounds memory when the receiver stops reading.
const MAX_UNWRITTEN: u64 = 64 * 1024 * 1024;

/// Listen backlog of the proxy's socket.
///
/// Source: a common server default; the proxy only serves local tests and benches.
const LISTEN_BACKLOG: u32 = 1024;

/// Pause after a failed `accept` (for example when out of file descriptors).
///
/// Source: reasonable default; short enough not to matter for a benchmark.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Highest queue delay the statistics record, in microseconds (larger values saturate).
///
/// Source: one hour; no queue in a profile here takes longer to drain.
const MAX_RECORDED_DELAY_US: u64 = 3_600_000_000;

/// How far ahead "never" is for a timer whose target cannot be represented.
///
/// Source: arbitrary; the proxy re-checks when it wakes.
const FAR_FUTURE: Duration = Duration::from_secs(86_400);

/// Options of a [`LinkProxy`] that are not part of the link profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Seed for the reset faults. Default 0.
    pub seed: u64,
    /// Where on the schedules' time axis the emulation starts. Default 0.
    pub start_offset: Duration,
    /// `SO_SNDBUF`/`SO_RCVBUF` of the proxy's sockets. Default [`DEFAULT_SOCKET_BUFFER`].
    pub socket_buffer_bytes: u32,
    /// Minimum time between two writes of one connection direction. Default [`DEFAULT_TICK`].
    pub tick: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            seed: 0,
            start_offset: Duration::ZERO,
            socket_buffer_bytes: DEFAULT_SOCKET_BUFFER,
            tick: DEFAULT_TICK,
        }
    }
}

impl ProxyOptions {
    /// These options with another seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// These options with another start offset.
    #[must_use]
    pub fn with_start_offset(mut self, offset: Duration) -> Self {
        self.start_offset = offset;
        self
    }
}

/// Counters of one direction of a [`LinkProxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionStats {
    /// Bytes read from senders into the bottleneck queue.
    pub bytes_enqueued: u64,
    /// Bytes written to receivers.
    pub bytes_delivered: u64,
    /// Bytes in the bottleneck queue now (not yet departed).
    pub backlog_bytes: u64,
    /// Median queueing delay of a read batch's last byte (arrival to departure, serialization
    /// included, propagation excluded).
    pub queue_delay_p50: Duration,
    /// 99th percentile of the same.
    pub queue_delay_p99: Duration,
    /// Maximum of the same.
    pub queue_delay_max: Duration,
}

/// Counters of a [`LinkProxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Client to server.
    pub up: DirectionStats,
    /// Server to client.
    pub down: DirectionStats,
    /// Connections accepted.
    pub connections: u64,
    /// Connections reset by an injected fault (rate or handover).
    pub resets: u64,
    /// Connections torn down because of an I/O error on one side (a peer's reset, a failed
    /// upstream connect); the other side is reset too.
    pub aborted: u64,
}

/// A running link proxy: a loopback TCP proxy whose two directions are emulated links.
/// Dropping it stops it (like [`LinkProxy::shutdown`], without waiting).
///
/// Clients connect to [`LinkProxy::addr`]; each connection is relayed to the upstream address.
/// Bytes read from the client enter the **uplink**'s bottleneck queue and are written to the
/// server when they leave it (their [`Bottleneck`] departure) plus the uplink's propagation
/// delay; bytes from the server take the **downlink** the same way. A half-close (FIN) is passed
/// on after the propagation delay, behind the data.
///
/// * **Connection setup costs a round trip.** The client's `connect` completes at once on
///   loopback, but the proxy starts relaying only one RTT (`up.delay + down.delay`) later, as
///   a TCP handshake would delay the first byte. Bytes sent meanwhile wait in the sockets.
///
/// * **One bottleneck per direction, shared by all connections.** Parallel uploads compete for
///   the same capacity, in arrival order (FIFO), as on a real cell. The schedule's clock starts
///   when the proxy starts (at [`ProxyOptions::start_offset`] on the schedule's axis).
/// * **Backpressure, not drops.** When the queue is full the proxy stops reading from the
///   sender's socket, so TCP flow control pushes back on the sender. Listening and upstream
///   sockets get small kernel buffers ([`ProxyOptions::socket_buffer_bytes`]) so the queueing
///   happens in the emulated queue, not in the proxy's kernel. (The sender's own send buffer is
///   the sender's business, as on a phone.) Several connections may each read up to the free
///   space at once, so the queue can overshoot its capacity by at most one read per connection.
/// * **Coarse timers.** A writer sleeps until its next byte is due and then writes everything
///   due in one go, at most once per [`ProxyOptions::tick`] (1 ms), so 200 Mbit/s costs about a
///   thousand writes a second per connection, not one per packet.
/// * **Faults.** With [`Faults::resets_per_mib`](crate::link::Faults::resets_per_mib), the
///   connection that carries the byte at which a seeded, exponentially distributed distance
///   runs out is reset (RST on both sides, via `SO_LINGER` 0);
///   [`Faults::reset_at`](crate::link::Faults::reset_at) resets every open connection at the
///   given times. An I/O error on either side (a peer's own reset) resets the other side too.
///
/// Determinism: for a given seed, start offset and arrival pattern, the departures and the
/// reset points (counted in bytes) are the same. Real sockets and timers add jitter of the
/// order of the tick.
pub struct LinkProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    profile: LinkProfile,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for LinkProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("profile", &self.profile.name())
            .finish_non_exhaustive()
    }
}

impl LinkProxy {
    /// Starts a proxy on `127.0.0.1:0` that relays to `upstream` through `profile`'s links.
    /// The schedules' clock starts now.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the listening socket cannot be set up.
    pub async fn start(
        upstream: SocketAddr,
        profile: LinkProfile,
        options: ProxyOptions,
    ) -> Result<LinkProxy> {
        let io_err = |what: &str, e: io::Error| {
            Error::new(ErrorKind::Io, format!("link proxy: {what}")).with_source(e)
        };
        let socket = TcpSocket::new_v4().map_err(|e| io_err("create socket", e))?;
        socket
            .set_recv_buffer_size(options.socket_buffer_bytes)
            .map_err(|e| io_err("set receive buffer", e))?;
        socket
            .set_send_buffer_size(options.socket_buffer_bytes)
            .map_err(|e| io_err("set send buffer", e))?;
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| io_err("bind 127.0.0.1:0", e))?;
        let listener = socket
            .listen(LISTEN_BACKLOG)
            .map_err(|e| io_err("listen", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| io_err("local address", e))?;

        let (handover, _) = watch::channel(0u64);
        let start = Instant::now();
        let shared = Arc::new(Shared {
            start,
            tick: options.tick,
            upstream,
            socket_buffer: options.socket_buffer_bytes,
            up: Direction::new(&profile, true, options.start_offset)?,
            down: Direction::new(&profile, false, options.start_offset)?,
            dice: Mutex::new(ResetDice::new(
                options.seed,
                profile.faults().resets_per_mib,
            )),
            handover,
            connections: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
        });
        let mut tasks = vec![tokio::spawn(accept_loop(shared.clone(), listener))];
        if !profile.faults().reset_at.is_empty() {
            tasks.push(tokio::spawn(handover_timer(
                shared.clone(),
                profile.faults().reset_at.clone(),
            )));
        }
        tracing::debug!(%addr, %upstream, profile = profile.name(), "link proxy started");
        Ok(LinkProxy {
            addr,
            shared,
            profile,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The profile being emulated.
    pub fn profile(&self) -> &LinkProfile {
        &self.profile
    }

    /// Time since the proxy started (emulation time).
    pub fn elapsed(&self) -> Duration {
        self.shared.now()
    }

    /// The current position on the schedules' axis: start offset + elapsed. Pass this as the
    /// `start` of [`IdealTime::compute`](super::IdealTime::compute) when an upload begins.
    pub fn schedule_time(&self) -> Duration {
        self.shared.up.start_offset.saturating_add(self.elapsed())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        let now = self.shared.now();
        LinkStats {
            up: self.shared.up.stats(now),
            down: self.shared.down.stats(now),
            connections: self.shared.connections.load(Ordering::Relaxed),
            resets: self.shared.resets.load(Ordering::Relaxed),
            aborted: self.shared.aborted.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting and closes every connection, then waits for the proxy's tasks to end.
    pub async fn shutdown(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            // An aborted task reports a cancellation error; that is the expected outcome.
            let _ = task.await;
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// State shared by the proxy's tasks.
struct Shared {
    start: Instant,
    tick: Duration,
    upstream: SocketAddr,
    socket_buffer: u32,
    up: Direction,
    down: Direction,
    dice: Mutex<ResetDice>,
    handover: watch::Sender<u64>,
    connections: AtomicU64,
    resets: AtomicU64,
    aborted: AtomicU64,
}

impl Shared {
    /// Emulation time.
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The instant of emulation time `t`.
    fn instant(&self, t: Duration) -> Instant {
        self.start
            .checked_add(t)
            .unwrap_or_else(|| Instant::now() + FAR_FUTURE)
    }

    /// Counts `n` bytes carried; true if the connection carrying them must be reset.
    fn carry(&self, n: u64) -> bool {
        lock(&self.dice).carry(n)
    }
}

/// One direction's bottleneck and counters.
struct Direction {
    delay: Duration,
    queue_bytes: u64,
    start_offset: Duration,
    queue: Mutex<Bottleneck>,
    stats: Mutex<DirStats>,
}

struct DirStats {
    enqueued: u64,
    delivered: u64,
    delay_us: Histogram<u64>,
}

impl Direction {
    fn new(profile: &LinkProfile, up: bool, start_offset: Duration) -> Result<Direction> {
        let link = if up { profile.up() } else { profile.down() };
        let delay_us = Histogram::new_with_max(MAX_RECORDED_DELAY_US, 3).map_err(|e| {
            Error::new(ErrorKind::InvalidConfig, "link proxy: histogram").with_source(e)
        })?;
        Ok(Direction {
            delay: link.delay(),
            queue_bytes: link.queue_bytes(),
            start_offset,
            queue: Mutex::new(Bottleneck::new(link.schedule().clone(), start_offset)),
            stats: Mutex::new(DirStats {
                enqueued: 0,
                delivered: 0,
                delay_us,
            }),
        })
    }

    /// Free queue space at `now` if at least one MTU (or the whole queue, if smaller) is free;
    /// otherwise the emulation time at which it will be.
    fn free_space(&self, now: Duration) -> std::result::Result<u64, Duration> {
        let need = super::MTU.min(self.queue_bytes);
        let q = lock(&self.queue);
        let free = self.queue_bytes.saturating_sub(q.backlog(now));
        if free >= need {
            Ok(free)
        } else {
            Err(q.drained_to(self.queue_bytes - need))
        }
    }

    fn enqueue(&self, now: Duration, n: u64) -> Enqueued {
        let e = lock(&self.queue).enqueue(now, n);
        let waited = e.last_departure.saturating_sub(now);
        let mut st = lock(&self.stats);
        st.enqueued += n;
        st.delay_us
            .saturating_record(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
        e
    }

    /// Units that have left the bottleneck by emulation time `at`.
    fn units_through(&self, at: Duration) -> u64 {
        lock(&self.queue).units_through(at)
    }

    /// Emulation time at which `unit` reaches the receiver (departure + propagation delay).
    fn arrival(&self, unit: u64) -> Duration {
        lock(&self.queue).departure(unit).saturating_add(self.delay)
    }

    fn delivered(&self, n: u64) {
        lock(&self.stats).delivered += n;
    }

    fn stats(&self, now: Duration) -> DirectionStats {
        let backlog_bytes = lock(&self.queue).backlog(now);
        let st = lock(&self.stats);
        let us = |v: u64| Duration::from_micros(v);
        let empty = st.delay_us.is_empty();
        DirectionStats {
            bytes_enqueued: st.enqueued,
            bytes_delivered: st.delivered,
            backlog_bytes,
            queue_delay_p50: if empty {
                Duration::ZERO
            } else {
                us(st.delay_us.value_at_quantile(0.5))
            },
            queue_delay_p99: if empty {
                Duration::ZERO
            } else {
                us(st.delay_us.value_at_quantile(0.99))
            },
            queue_delay_max: if empty {
                Duration::ZERO
            } else {
                us(st.delay_us.max())
            },
        }
    }
}

/// The seeded reset-distance generator.
struct ResetDice {
    rng: StdRng,
    mean_bytes: Option<f64>,
    carried: u64,
    next_at: Option<u64>,
}

impl ResetDice {
    fn new(seed: u64, resets_per_mib: f64) -> ResetDice {
        let mut rng = StdRng::seed_from_u64(seed);
        let mean_bytes =
            (resets_per_mib.is_finite() && resets_per_mib > 0.0).then(|| MIB_F64 / resets_per_mib);
        let next_at = mean_bytes.map(|m| exponential(&mut rng, m));
        ResetDice {
            rng,
            mean_bytes,
            carried: 0,
            next_at,
        }
    }

    fn carry(&mut self, n: u64) -> bool {
        self.carried = self.carried.saturating_add(n);
        match (self.next_at, self.mean_bytes) {
            (Some(at), Some(mean)) if self.carried >= at => {
                self.next_at = Some(
                    self.carried
                        .saturating_add(exponential(&mut self.rng, mean)),
                );
                true
            }
            _ => false,
        }
    }
}

/// An exponentially distributed byte count with the given mean, at least 1.
///
/// Hand-written inverse-CDF sampling (`-ln(1 - U) * mean`): one line, where `rand_distr`
/// would be a dependency for it alone.
fn exponential(rng: &mut StdRng, mean: f64) -> u64 {
    let u: f64 = rng.random(); // in [0, 1)
    let x = -(1.0 - u).ln() * mean;
    // A float-to-int `as` cast saturates (and maps NaN to 0), so this cannot wrap.
    (x as u64).max(1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent counters; keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a connection ends abnormally.
#[derive(Debug)]
enum End {
    /// An injected fault: reset both sides.
    Reset,
    /// An I/O error on one side: reset the other one too.
    Io(io::Error),
}

/// Bytes of one connection direction between the bottleneck and the receiver.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    /// Reader to writer: data or end of stream.
    data: Notify,
    /// Writer to reader: bytes written, room again.
    space: Notify,
}

#[derive(Default)]
struct PipeState {
    chunks: VecDeque<Chunk>,
    /// When the sender's end of stream was read (emulation time).
    eof: Option<Duration>,
    unwritten: u64,
}

/// A read batch: bytes with consecutive units from `first_unit` on.
struct Chunk {
    data: Bytes,
    first_unit: u64,
}

#[derive(Clone, Copy)]
enum Dir {
    Up,
    Down,
}

impl Shared {
    fn dir(&self, dir: Dir) -> &Direction {
        match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    tracing::trace!(%peer, "link proxy: connection accepted");
                    connections.spawn(run_connection(shared.clone(), client));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "link proxy: accept failed");
                    sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handover_timer(shared: Arc<Shared>, mut times: Vec<Duration>) {
    times.sort_unstable();
    for t in times {
        sleep_until(shared.instant(t)).await;
        tracing::debug!(at = ?t, "link proxy: handover, resetting every connection");
        shared.handover.send_modify(|generation| *generation += 1);
    }
}

async fn connect_upstream(shared: &Shared) -> io::Result<TcpStream> {
    let socket = if shared.upstream.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_recv_buffer_size(shared.socket_buffer)?;
    socket.set_send_buffer_size(shared.socket_buffer)?;
    socket.connect(shared.upstream).await
}

/// Sets `SO_LINGER` to 0 so that closing the socket sends RST.
fn arm_reset(stream: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "link proxy: cannot set SO_LINGER");
    }
}

async fn run_connection(shared: Arc<Shared>, client: TcpStream) {
    let mut handover = shared.handover.subscribe();
    let server = match connect_upstream(&shared).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "link proxy: upstream connect failed");
            shared.aborted.fetch_add(1, Ordering::Relaxed);
            arm_reset(&client);
            return;
        }
    };
    // Small writes must not wait for Nagle: the proxy decides when bytes go.
    for s in [&client, &server] {
        if let Err(e) = s.set_nodelay(true) {
            tracing::debug!(error = %e, "link proxy: cannot set TCP_NODELAY");
        }
    }
    // A TCP handshake costs a round trip before the first byte can be sent: start relaying
    // one RTT after the accept (the client's bytes wait in its own socket meanwhile).
    let handshake = shared.up.delay.saturating_add(shared.down.delay);
    let reset_early = tokio::select! {
        () = sleep(handshake) => false,
        Ok(()) = handover.changed() => true,
    };
    if reset_early {
        arm_reset(&client);
        arm_reset(&server);
        shared.resets.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let client = Arc::new(client);
    let server = Arc::new(server);
    let up = Arc::new(Pipe::default());
    let down = Arc::new(Pipe::default());
    let mut tasks = JoinSet::new();
    tasks.spawn(pump_in(shared.clone(), Dir::Up, client.clone(), up.clone()));
    tasks.spawn(pump_out(shared.clone(), Dir::Up, server.clone(), up));
    tasks.spawn(pump_in(
        shared.clone(),
        Dir::Down,
        server.clone(),
        down.clone(),
    ));
    tasks.spawn(pump_out(shared.clone(), Dir::Down, client.clone(), down));

    let mut handover_open = true;
    let end = loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break None,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(end))) => break Some(end),
                Some(Err(e)) => break Some(End::Io(io::Error::other(e.to_string()))),
            },
            changed = handover.changed(), if handover_open => match changed {
                Ok(()) => break Some(End::Reset),
                Err(_) => handover_open = false,
            },
        }
    };
    if let Some(end) = end {
        arm_reset(&client);
        arm_reset(&server);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        match end {
            End::Reset => {
                shared.resets.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("link proxy: connection reset (injected fault)");
            }
            End::Io(e) => {
                shared.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "link proxy: connection aborted");
            }
        }
    }
    // The last references to the sockets drop here: a normal close, or RST after a reset.
}

/// Reads from `src` into the direction's bottleneck and this connection's pipe.
async fn pump_in(
    shared: Arc<Shared>,
    dir: Dir,
    src: Arc<TcpStream>,
    pipe: Arc<Pipe>,
) -> std::result::Result<(), End> {
    let d = shared.dir(dir);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        // Room in this connection's after-bottleneck budget.
        loop {
            let space = pipe.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if lock(&pipe.state).unwritten < MAX_UNWRITTEN {
                break;
            }
            space.await;
        }
        // Room in the shared bottleneck queue.
        let free = loop {
            match d.free_space(shared.now()) {
                Ok(free) => break free,
                Err(wake) => sleep_until(shared.instant(wake)).await,
            }
        };
        src.readable().await.map_err(End::Io)?;
        let want = usize::try_from(free).unwrap_or(usize::MAX).min(READ_CHUNK);
        let n = match src.try_read(&mut buf[..want]) {
            Ok(0) => {
                lock(&pipe.state).eof = Some(shared.now());
                pipe.data.notify_one();
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(End::Io(e)),
        };
        if shared.carry(n as u64) {
            return Err(End::Reset);
        }
        let e = d.enqueue(shared.now(), n as u64);
        {
            let mut st = lock(&pipe.state);
            st.chunks.push_back(Chunk {
                data: Bytes::copy_from_slice(&buf[..n]),
                first_unit: e.first_unit,
            });
            st.unwritten += n as u64;
        }
        pipe.data.notify_one();
    }
}

/// What the writer finds at the head of its pipe.
enum Head {
    Unit(u64),
    /// Everything is written and the sender closed at this emulation time.
    Eof(Duration),
    Empty,
}

/// Writes the pipe's bytes to `dst` once they have left the bottleneck and crossed the delay.
async fn pump_out(
    shared: Arc<Shared>,
    dir: Dir,
    dst: Arc<TcpStream>,
    pipe: Arc<Pipe>,
) -> std::result::Result<(), End> {
    let d = shared.dir(dir);
    let mut last_write: Option<Instant> = None;
    loop {
        let data = pipe.data.notified();
        tokio::pin!(data);
        data.as_mut().enable();
        let head = {
            let st = lock(&pipe.state);
            match st.chunks.front() {
                Some(c) => Head::Unit(c.first_unit),
                None => match st.eof {
                    Some(at) => Head::Eof(at),
                    None => Head::Empty,
                },
            }
        };
        let first = match head {
            Head::Empty => {
                data.await;
                continue;
            }
            Head::Eof(at) => {
                // Pass the sender's end of stream on (FIN) after the propagation delay, keeping
                // the other direction open.
                sleep_until(shared.instant(at.saturating_add(d.delay))).await;
                if let Err(e) = socket2::SockRef::from(&*dst).shutdown(Shutdown::Write) {
                    tracing::debug!(error = %e, "link proxy: shutdown failed");
                }
                return Ok(());
            }
            Head::Unit(first) => first,
        };
        let earliest = last_write.and_then(|t| t.checked_add(shared.tick));
        if let Some(earliest) = earliest.filter(|&t| t > Instant::now()) {
            sleep_until(earliest).await;
            continue;
        }
        let limit = shared
            .now()
            .checked_sub(d.delay)
            .map_or(0, |t| d.units_through(t));
        if limit < first {
            sleep_until(shared.instant(d.arrival(first))).await;
            continue;
        }
        let due = take_due(&pipe, limit);
        let mut written = 0u64;
        for bytes in &due {
            write_all(&dst, bytes).await.map_err(End::Io)?;
            written += bytes.len() as u64;
        }
        last_write = Some(Instant::now());
        {
            let mut st = lock(&pipe.state);
            st.unwritten = st.unwritten.saturating_sub(written);
        }
        pipe.space.notify_one();
        d.delivered(written);
    }
}

/// Removes from the pipe every byte whose unit is at most `limit`.
fn take_due(pipe: &Pipe, limit: u64) -> Vec<Bytes> {
    let mut st = lock(&pipe.state);
    let mut out = Vec::new();
    while let Some(front) = st.chunks.front_mut() {
        if front.first_unit > limit {
            break;
        }
        let due = limit - front.first_unit + 1;
        if due >= front.data.len() as u64 {
            if let Some(chunk) = st.chunks.pop_front() {
                out.push(chunk.data);
            }
        } else {
            // `due < len <= usize::MAX`, so the conversion is exact.
            let due = usize::try_from(due).unwrap_or(front.data.len());
            out.push(front.data.split_to(due));
            front.first_unit += due as u64;
            break;
        }
    }
    out
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_distances_are_seeded_and_average_out() {
        let mut a = ResetDice::new(7, 1.0 / 8.0);
        let mut b = ResetDice::new(7, 1.0 / 8.0);
        let mut resets = 0u32;
        // 8 GiB in 64 KiB reads: about 1024 resets expected.
        for _ in 0..(8 * 1024 * 16) {
            let ra = a.carry(64 * 1024);
            assert_eq!(ra, b.carry(64 * 1024));
            resets += u32::from(ra);
        }
        assert!((900..1150).contains(&resets), "{resets}");
        let mut none = ResetDice::new(7, 0.0);
        assert!(!none.carry(u64::MAX));
        let mut nan = ResetDice::new(7, f64::NAN);
        assert!(!nan.carry(u64::MAX));
    }

    #[test]
    fn take_due_splits_the_head_chunk() {
        let pipe = Pipe::default();
        {
            let mut st = lock(&pipe.state);
            st.chunks.push_back(Chunk {
                data: Bytes::from_static(b"abcd"),
                first_unit: 1,
            });
            st.chunks.push_back(Chunk {
                data: Bytes::from_static(b"efgh"),
                first_unit: 10,
            });
        }
        assert!(take_due(&pipe, 0).is_empty());
        assert_eq!(take_due(&pipe, 2), vec![Bytes::from_static(b"ab")]);
        assert_eq!(
            take_due(&pipe, 11),
            vec![Bytes::from_static(b"cd"), Bytes::from_static(b"ef")]
        );
        assert_eq!(take_due(&pipe, 100), vec![Bytes::from_static(b"gh")]);
        assert!(lock(&pipe.state).chunks.is_empty());
    }
}
