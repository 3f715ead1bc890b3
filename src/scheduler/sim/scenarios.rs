//! Issue 4's scenario table: the adaptive controller and the fixed presets of today's clients
//! on the link proxy's model ([`FifoLink`]), in virtual time.
//!
//! Each scenario is a link profile (the built-in ones of `link::LinkProfile`, two held steps,
//! and the four Mahimahi uplink traces of `../shared/traces` when they are present) with a
//! file sized so its ideal time (`link::ideal_time`, INIT and FINALIZE included) is about a
//! minute, as the bench harness sizes them. Every strategy runs the whole upload through the
//! engine-like driver with the engine's default retry policy, giving up where the engine
//! would. The table (efficiency = ideal / actual, chunk and parallelism ranges, bytes re-sent)
//! is printed; the adaptive controller's numbers are checked against ranges, and every range
//! failure is listed before one assertion.
//!
//! `cargo test --lib scheduler::sim::scenarios -- --nocapture`

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

use super::fifo::FifoLink;
use super::{Report, Setup, drive, persistent_retry};
use crate::engine::RetryPolicy;
use crate::limits::{DEFAULT_MAX_APPEND_BYTES, MIB};
use crate::link::{LinkProfile, RoundTrips, Schedule, ideal_time};
use crate::scheduler::adaptive::MAX_PARALLELISM_LIMIT;
use crate::scheduler::{AdaptiveStrategy, FixedStrategy, Outcome, Strategy};

const KIB: u64 = 1024;

/// Ideal time each scenario's file is sized for.
///
/// Source: issue 3/4 ("the file size for each link is chosen so the ideal time is about one
/// minute"), the bench harness' default target.
const TARGET_IDEAL: Duration = Duration::from_secs(60);

/// Largest file the sizing proposes (the X video limit), and its granule.
///
/// Source: the bench harness' size solver (512 MiB cap, 1 KiB granule).
const MAX_FILE: u64 = 512 * MIB;
const SIZE_GRANULE: u64 = KIB;

/// Seed of the links' faults, as the bench's default.
///
/// Source: `chunkwise bench --seed` default 3.
const LINK_SEED: u64 = 3;

/// Seeds the lossy scenario is averaged over: one seed's reset pattern can favour a chunk size
/// by luck.
///
/// Source: reasonable default; five runs of a minute each.
const LOSSY_SEEDS: [u64; 5] = [3, 4, 5, 6, 7];

/// A run may take this many ideal times before it counts as failed.
///
/// Source: reasonable bound: far beyond any efficiency worth reporting (0.05).
const TIME_LIMIT_FACTOR: f64 = 20.0;

/// Where the Mahimahi traces live, next to the repository checkout.
const TRACES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces");

/// The fixed presets the bench compares against: chunk, parallelism, per-request deadline.
///
/// Source: the bench's strategy presets. `1mib-seq`: egg-mode (1 MiB, sequential, no client
/// timeout, 120 s stand-in); `4mib-seq`: xurl (4 MiB, `http.Client{Timeout: 30 s}`);
/// `1mib-x3`: node-twitter-api-v2 (1 MiB, 3 at once, no timeout, 120 s stand-in); `5mib-seq`:
/// twit (5 MiB, `timeout_ms` 60 s).
const PRESETS: [(&str, u64, usize, u64); 4] = [
    ("1mib-seq", MIB, 1, 120),
    ("4mib-seq", 4 * MIB, 1, 30),
    ("1mib-x3", MIB, 3, 120),
    ("5mib-seq", 5 * MIB, 1, 60),
];

/// What the adaptive controller must achieve on a scenario.
#[derive(Debug, Clone)]
struct Expect {
    /// Lowest efficiency (ideal / actual) of any seed.
    efficiency: f64,
    /// Chunk sizes planned once the upload has settled (after the first quarter of its time;
    /// the last, the file's remainder, left out).
    chunk: RangeInclusive<u64>,
    /// Parallelism levels used.
    parallelism: RangeInclusive<usize>,
}

struct Scenario {
    name: String,
    /// One link per seed (the same profile).
    links: Vec<FifoLink>,
    file: u64,
    ideal: f64,
    expect: Expect,
}

/// One strategy's result on one scenario, over its seeds.
#[derive(Debug, Clone)]
struct Cell {
    /// Total time (INIT to FINALIZE) per seed, seconds; `None` where the upload failed.
    totals: Vec<Option<f64>>,
    /// Why a run failed (the first one).
    failed: Option<String>,
    /// Smallest and largest chunk planned (the remainder left out).
    chunk: (u64, u64),
    /// The same once settled (after the first quarter of the run).
    late_chunk: (u64, u64),
    parallelism: (usize, usize),
    /// Bytes sent more than once, as a share of the file: mean and worst seed.
    resent: f64,
    worst_resent: f64,
    timeouts: usize,
    resets: usize,
}

impl Cell {
    /// Mean total time; infinite if any run failed.
    fn total(&self) -> f64 {
        let n = self.totals.len().max(1) as f64;
        self.totals
            .iter()
            .map(|t| t.unwrap_or(f64::INFINITY))
            .sum::<f64>()
            / n
    }

    /// Mean efficiency (a failed run counts 0).
    fn efficiency(&self, ideal: f64) -> f64 {
        let n = self.totals.len().max(1) as f64;
        self.totals
            .iter()
            .map(|t| t.map_or(0.0, |t| ideal / t))
            .sum::<f64>()
            / n
    }

    /// Lowest efficiency of any seed.
    fn worst(&self, ideal: f64) -> f64 {
        self.totals
            .iter()
            .map(|t| t.map_or(0.0, |t| ideal / t))
            .fold(f64::INFINITY, f64::min)
    }
}

/// The smallest file (a multiple of [`SIZE_GRANULE`], at most [`MAX_FILE`]) whose ideal time
/// over `profile` is at least `target`.
fn size_for_target(profile: &LinkProfile, target: Duration) -> u64 {
    crate::link::payload_for_ideal(
        profile,
        target,
        RoundTrips::CHUNKED_UPLOAD,
        SIZE_GRANULE,
        MAX_FILE,
    )
}

fn scenario(name: &str, profile: LinkProfile, seeds: &[u64], expect: Expect) -> Scenario {
    let file = size_for_target(&profile, TARGET_IDEAL);
    let ideal = ideal_time(&profile, file, RoundTrips::CHUNKED_UPLOAD).as_secs_f64();
    Scenario {
        name: name.to_string(),
        links: seeds
            .iter()
            .map(|&s| FifoLink::new(profile.clone(), s))
            .collect(),
        file,
        ideal,
        expect,
    }
}

fn builtin(name: &str) -> LinkProfile {
    LinkProfile::from_name(name).unwrap()
}

/// The step profile's link with `steps` (`(seconds, Mbit/s)`, the last one held for an hour)
/// as its uplink schedule.
fn held_steps(name: &str, steps: &[(u64, u64)]) -> LinkProfile {
    let p = builtin("step-20-2-20");
    let schedule = Schedule::steps(
        steps
            .iter()
            .map(|&(secs, mbit)| (Duration::from_secs(secs), mbit * 1_000_000)),
    )
    .unwrap();
    let up = p.up().clone().with_schedule(schedule);
    p.with_up(up).with_name(name)
}

fn expect(
    efficiency: f64,
    chunk: RangeInclusive<u64>,
    parallelism: RangeInclusive<usize>,
) -> Expect {
    Expect {
        efficiency,
        chunk,
        parallelism,
    }
}

/// Every scenario; the traces only when their files exist.
///
/// Efficiency floors are issue 4's targets for the real-socket runs. Chunk ranges follow from
/// the 4 s target time at two or three in flight (10 Mbit/s: 2.5 MB; 1 Mbit/s: the 256 KiB
/// floor; 20 Mbit/s: 5 MB), graded sizes after simultaneous starts (down to a third), the
/// estimate's collapse after a drop or an outage (down to the floor), and on the lossy link
/// the failure optimum (the floor). Parallelism stays at two or more except for the fixed-cost
/// probe, which only runs once failures have been seen.
async fn scenarios() -> Vec<Scenario> {
    let mut v = vec![
        scenario(
            "constant 10 Mbit/s 40 ms",
            builtin("constant-10mbit-40ms"),
            &[LINK_SEED],
            expect(0.95, MIB..=3 * MIB, 2..=4),
        ),
        scenario(
            "constant 1 Mbit/s 150 ms",
            builtin("constant-1mbit-150ms"),
            &[LINK_SEED],
            expect(0.95, 256 * KIB..=512 * KIB, 2..=4),
        ),
        scenario(
            "step down 20→2 at 20 s",
            held_steps("step-down", &[(20, 20), (3600, 2)]),
            &[LINK_SEED],
            expect(0.80, 256 * KIB..=5 * MIB, 2..=4),
        ),
        scenario(
            "step up 2→20 at 20 s",
            held_steps("step-up", &[(20, 2), (3600, 20)]),
            &[LINK_SEED],
            expect(0.80, 256 * KIB..=5 * MIB, 2..=6),
        ),
        scenario(
            "step 20→2→20 (loop)",
            builtin("step-20-2-20"),
            &[LINK_SEED],
            expect(0.80, 256 * KIB..=5 * MIB, 2..=4),
        ),
        scenario(
            "outage 20 s",
            builtin("outage-20s"),
            &[LINK_SEED],
            expect(0.80, 256 * KIB..=5 * MIB, 2..=4),
        ),
        // Not in issue 4's list: the built-in profile where every connection is reset at once
        // (at 10, 25 and 40 s), the other reset model.
        scenario(
            "handover (3 × all reset)",
            builtin("handover"),
            &[LINK_SEED],
            expect(0.80, 256 * KIB..=3 * MIB, 1..=4),
        ),
        scenario(
            "lossy (reset / 8 MiB)",
            builtin("lossy"),
            &LOSSY_SEEDS,
            expect(0.80, 256 * KIB..=512 * KIB, 1..=6),
        ),
    ];
    let traces: [(&str, f64); 4] = [
        ("TMobile-LTE-short.up", 0.90),
        ("Verizon-LTE-short.up", 0.90),
        ("ATT-LTE-driving-2016.up", 0.80),
        ("TMobile-UMTS-driving.up", 0.80),
    ];
    for (file, efficiency) in traces {
        let path = Path::new(TRACES_DIR).join(file);
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            println!("skipping {file}: not found in {TRACES_DIR}");
            continue;
        }
        let profile = LinkProfile::from_trace_file(&path).await.unwrap();
        v.push(scenario(
            file,
            profile,
            &[LINK_SEED],
            expect(efficiency, 256 * KIB..=5 * MIB, 2..=6),
        ));
    }
    v
}

/// The driver's setup for one run of `sc` over `link`: the engine's retry policy, seeded,
/// giving up where the engine would.
fn setup(sc: &Scenario, link: &FifoLink) -> Setup {
    Setup {
        file_len: sc.file,
        max_chunk: DEFAULT_MAX_APPEND_BYTES,
        time_limit: TIME_LIMIT_FACTOR * sc.ideal,
        retry: RetryPolicy::default().with_seed(link.seed),
    }
}

/// Runs `make()`'s strategy over every seed's link of `sc`.
fn measure<S: Strategy>(sc: &Scenario, make: impl Fn() -> S) -> Cell {
    let mut cell = Cell {
        totals: Vec::new(),
        failed: None,
        chunk: (u64::MAX, 0),
        late_chunk: (u64::MAX, 0),
        parallelism: (usize::MAX, 0),
        resent: 0.0,
        worst_resent: 0.0,
        timeouts: 0,
        resets: 0,
    };
    let runs = sc.links.len() as f64;
    for link in &sc.links {
        let mut strategy = make();
        let r: Report = drive(
            &mut strategy,
            link,
            &setup(sc, link),
            Instant::now(),
            |_, _| {},
        );
        if r.completed {
            cell.totals
                .push(Some(link.opening_time() + r.finished_at + r.closing));
        } else {
            cell.totals.push(None);
            cell.failed.get_or_insert_with(|| {
                r.gave_up
                    .clone()
                    .unwrap_or_else(|| format!("not done after {:.0} s", r.finished_at))
            });
        }
        let resent = (r.bytes_sent - sc.file as f64).max(0.0) / sc.file as f64;
        cell.resent += resent / runs;
        cell.worst_resent = cell.worst_resent.max(resent);
        let settled = r.finished_at / 4.0;
        for p in &r.plans[..r.plans.len().saturating_sub(1)] {
            cell.chunk = (cell.chunk.0.min(p.size), cell.chunk.1.max(p.size));
            if p.at >= settled {
                cell.late_chunk = (cell.late_chunk.0.min(p.size), cell.late_chunk.1.max(p.size));
            }
        }
        for &(_, l) in &r.limits {
            cell.parallelism = (cell.parallelism.0.min(l), cell.parallelism.1.max(l));
        }
        cell.timeouts += r.count(|o| matches!(o, Outcome::Timeout | Outcome::Stalled));
        cell.resets += r.count(|o| *o == Outcome::RetryableError);
    }
    cell
}

fn size(b: u64) -> String {
    if b == u64::MAX {
        "-".into()
    } else if b >= MIB {
        format!("{:.1}M", b as f64 / MIB as f64)
    } else {
        format!("{}K", b / KIB)
    }
}

fn range<T: std::fmt::Display>(r: (T, T), f: impl Fn(T) -> String) -> String {
    format!("{}-{}", f(r.0), f(r.1))
}

/// Largest share of the file the adaptive controller may send twice.
///
/// Source: issue 4's target ("bytes sent again ≤ 10 % of the file").
const MAX_RESENT: f64 = 0.10;

/// The adaptive controller may be at most this much slower than the best fixed preset.
///
/// Source: issue 4's target ("on every link within 2 % of the best fixed preset or faster").
const BEST_FIXED_MARGIN: f64 = 0.02;

/// On the lossy link the controller must be at least this much faster than 4 MiB sequential.
///
/// Source: issue 4's target.
const LOSSY_SPEEDUP: f64 = 1.2;

/// Checks the adaptive cell against the scenario's expectations and the fixed presets.
fn check(sc: &Scenario, adaptive: &Cell, fixed: &[(&str, Cell)], failures: &mut Vec<String>) {
    let mut fail = |what: String| failures.push(format!("{}: {what}", sc.name));
    let e = &sc.expect;
    if let Some(why) = &adaptive.failed {
        fail(format!("the adaptive upload failed: {why}"));
        return;
    }
    let worst = adaptive.worst(sc.ideal);
    if worst < e.efficiency {
        fail(format!(
            "efficiency {worst:.3} (worst seed) below {:.2}",
            e.efficiency
        ));
    }
    let (lo, hi) = adaptive.late_chunk;
    if lo != u64::MAX && (!e.chunk.contains(&lo) || !e.chunk.contains(&hi)) {
        fail(format!(
            "settled chunks {}..{} outside {}..{}",
            size(lo),
            size(hi),
            size(*e.chunk.start()),
            size(*e.chunk.end())
        ));
    }
    let (lo, hi) = adaptive.parallelism;
    if !e.parallelism.contains(&lo) || !e.parallelism.contains(&hi) {
        fail(format!(
            "parallelism {lo}..{hi} outside {:?}",
            e.parallelism
        ));
    }
    if adaptive.worst_resent > MAX_RESENT {
        fail(format!(
            "re-sent {:.1} % of the file (worst seed; at most {:.0} %)",
            adaptive.worst_resent * 100.0,
            MAX_RESENT * 100.0
        ));
    }
    let best = fixed
        .iter()
        .filter(|(_, c)| c.failed.is_none())
        .min_by(|a, b| a.1.total().total_cmp(&b.1.total()));
    if let Some((name, best)) = best {
        if adaptive.total() > best.total() * (1.0 + BEST_FIXED_MARGIN) {
            fail(format!(
                "{:.1} s, more than {:.0} % slower than {name} ({:.1} s)",
                adaptive.total(),
                BEST_FIXED_MARGIN * 100.0,
                best.total()
            ));
        }
    }
    for (name, c) in
        std::iter::once(("adaptive", adaptive)).chain(fixed.iter().map(|(n, c)| (*n, c)))
    {
        // The ideal is a lower bound: nothing may beat it in the model.
        for t in c.totals.iter().flatten() {
            if *t < sc.ideal {
                fail(format!(
                    "{name} took {t:.3} s, less than the ideal: the model is wrong"
                ));
            }
        }
    }
}

/// The lossy link's check against 4 MiB sequential: mean total times over the seeds, with
/// 4 MiB sequential retrying for as long as it takes (the engine would give up on most seeds,
/// when its retry budget runs out); a line for the table.
fn lossy_speedup(
    sc: &Scenario,
    adaptive: &Cell,
    seq4: &Cell,
    failures: &mut Vec<String>,
) -> String {
    let Some(&(_, chunk, n, deadline)) = PRESETS.iter().find(|p| p.0 == "4mib-seq") else {
        return String::new();
    };
    let mut total = 0.0;
    for link in &sc.links {
        let mut s = FixedStrategy::new(chunk, n, Duration::from_secs(deadline));
        let setup = Setup {
            retry: persistent_retry(link.seed),
            ..setup(sc, link)
        };
        let r = drive(&mut s, link, &setup, Instant::now(), |_, _| {});
        total += if r.completed {
            link.opening_time() + r.finished_at + r.closing
        } else {
            f64::INFINITY
        };
    }
    let speedup = total / sc.links.len() as f64 / adaptive.total();
    if speedup < LOSSY_SPEEDUP {
        failures.push(format!(
            "{}: only {speedup:.2}× as fast as 4mib-seq (at least {LOSSY_SPEEDUP})",
            sc.name
        ));
    }
    let gave_up = seq4.totals.iter().filter(|t| t.is_none()).count();
    format!(
        "adaptive is {speedup:.2}× as fast as 4mib-seq retrying without limit (mean of {} seeds); \
         with the engine's retry budget 4mib-seq fails on {gave_up} of them",
        sc.links.len()
    )
}

/// The scenario table: prints efficiency per strategy per scenario, and the adaptive
/// controller's chunk and parallelism ranges, re-sent bytes, timeouts and resets; checks the
/// adaptive controller's ranges and lists every failure before one assertion.
#[tokio::test(start_paused = true)]
async fn scenario_table() {
    let scenarios = scenarios().await;
    let mut failures = Vec::new();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<25} {:>6} {:>6} | {:>8} {:>9} {:>9} {:>5} {:>6} {:>3} {:>3} | {}",
        "scenario",
        "file",
        "ideal",
        "adaptive",
        "chunks",
        "settled",
        "par",
        "resent",
        "tmo",
        "rst",
        PRESETS
            .iter()
            .map(|p| format!("{:>13}", p.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut notes = Vec::new();
    for sc in &scenarios {
        let adaptive = measure(sc, AdaptiveStrategy::default);
        let fixed: Vec<(&str, Cell)> = PRESETS
            .iter()
            .map(|&(name, chunk, n, deadline)| {
                let cell = measure(sc, || {
                    FixedStrategy::new(chunk, n, Duration::from_secs(deadline))
                });
                (name, cell)
            })
            .collect();
        let eff = |c: &Cell| match &c.failed {
            Some(_) => format!("{:>8}", "failed"),
            None => format!("{:>8.3}", c.efficiency(sc.ideal)),
        };
        // A preset's efficiency and the share of the file it re-sent.
        let preset = |c: &Cell| format!("{} {:>3.0}%", eff(c), c.resent * 100.0);
        let _ = writeln!(
            table,
            "{:<25} {:>6} {:>5.1}s | {} {:>9} {:>9} {:>5} {:>5.1}% {:>3} {:>3} | {}",
            sc.name,
            size(sc.file),
            sc.ideal,
            eff(&adaptive),
            range(adaptive.chunk, size),
            range(adaptive.late_chunk, size),
            range(adaptive.parallelism, |n: usize| n.to_string()),
            adaptive.resent * 100.0,
            adaptive.timeouts,
            adaptive.resets,
            fixed
                .iter()
                .map(|(_, c)| preset(c))
                .collect::<Vec<_>>()
                .join(" ")
        );
        check(sc, &adaptive, &fixed, &mut failures);
        if let Some((_, seq4)) = fixed.iter().find(|(n, _)| *n == "4mib-seq") {
            if sc.name.starts_with("lossy") {
                notes.push(format!(
                    "{}: {}",
                    sc.name,
                    lossy_speedup(sc, &adaptive, seq4, &mut failures)
                ));
            }
        }
    }
    println!("{table}");
    for n in notes {
        println!("{n}");
    }
    assert!(
        failures.is_empty(),
        "{} range failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Seeds of the lossy link in the sweeps: more than the table's five, so a sweep sees the
/// tail (the seeds whose first resets hit the large chunks of the ramp).
///
/// Source: reasonable default; thirty one-minute uploads.
const SWEEP_LOSSY_SEEDS: std::ops::Range<u64> = 10..40;

/// Prints the adaptive controller's efficiency per scenario for each configuration, and on
/// the lossy link over [`SWEEP_LOSSY_SEEDS`] the mean, the worst seed and the share of the file
/// re-sent (mean / worst).
async fn sweep(label: &str, variants: &[(String, crate::scheduler::AdaptiveConfig)]) {
    let mut scenarios = scenarios().await;
    let seeds: Vec<u64> = SWEEP_LOSSY_SEEDS.collect();
    scenarios.push(scenario(
        "lossy, 30 seeds",
        builtin("lossy"),
        &seeds,
        expect(0.0, 0..=u64::MAX, 1..=MAX_PARALLELISM_LIMIT),
    ));
    let mut out = format!("{label:<10}");
    for sc in &scenarios {
        let _ = write!(out, " {:>8.8}", sc.name);
    }
    let _ = writeln!(out, " | lossy×30: worst, re-sent mean/worst");
    for (name, config) in variants {
        let _ = write!(out, "{name:<10}");
        let mut last = None;
        for sc in &scenarios {
            let c = measure(sc, || AdaptiveStrategy::new(*config).unwrap());
            let _ = write!(out, " {:>8.3}", c.efficiency(sc.ideal));
            last = Some((c.worst(sc.ideal), c.resent, c.worst_resent));
        }
        if let Some((worst, resent, worst_resent)) = last {
            let _ = writeln!(
                out,
                " | {worst:.3}, {:.1} % / {:.1} %",
                resent * 100.0,
                worst_resent * 100.0
            );
        }
    }
    println!("{out}");
}

/// The simulation behind [`crate::scheduler::adaptive::DEFAULT_DEADLINE_GAIN`].
///
/// `cargo test --lib scheduler::sim::scenarios::deadline_gain_sweep -- --ignored --nocapture`
#[tokio::test(start_paused = true)]
#[ignore = "simulation table; run by hand"]
async fn deadline_gain_sweep() {
    use crate::scheduler::AdaptiveConfig;
    let variants: Vec<_> = [4.0, 8.0, 12.0, 16.0, 24.0]
        .iter()
        .map(|&gain| {
            (
                format!("{gain}"),
                AdaptiveConfig {
                    deadline_gain: gain,
                    ..Default::default()
                },
            )
        })
        .collect();
    sweep("gain", &variants).await;
}

/// The simulation behind [`crate::scheduler::adaptive::DEFAULT_TARGET_CHUNK_TIME`].
///
/// `cargo test --lib scheduler::sim::scenarios::target_chunk_time_sweep -- --ignored
/// --nocapture`
#[tokio::test(start_paused = true)]
#[ignore = "simulation table; run by hand"]
async fn target_chunk_time_sweep() {
    use crate::scheduler::AdaptiveConfig;
    let variants: Vec<_> = [2, 3, 4, 6, 8]
        .iter()
        .map(|&secs| {
            (
                format!("{secs} s"),
                AdaptiveConfig {
                    target_chunk_time: Duration::from_secs(secs),
                    ..Default::default()
                },
            )
        })
        .collect();
    sweep("target", &variants).await;
}

/// Every attempt of the adaptive controller on one scenario, with its estimates after it: the
/// tool for looking into a row of the table. `SCENARIO` selects the first scenario whose name
/// starts with it (default: the first).
///
/// `SCENARIO=Verizon cargo test --lib scheduler::sim::scenarios::scenario_trace -- --ignored
/// --nocapture`
#[tokio::test(start_paused = true)]
#[ignore = "trace of one scenario; run by hand"]
async fn scenario_trace() {
    let prefix = std::env::var("SCENARIO").unwrap_or_default();
    let scenarios = scenarios().await;
    let sc = scenarios
        .iter()
        .find(|s| s.name.starts_with(&prefix))
        .unwrap();
    let link = &sc.links[0];
    let mut s = AdaptiveStrategy::default();
    let r = drive(&mut s, link, &setup(sc, link), Instant::now(), |s, a| {
        let e = s.estimates();
        println!(
            "{:8.3} {:8.3} #{:<3} {:>8} {:?} in flight {} deadline {:.1} s | rate {:.0} α {:?} σ {:?} chunk {} level {}",
            a.started,
            a.finished,
            a.index,
            a.bytes,
            a.outcome,
            a.in_flight,
            a.deadline.as_secs_f64(),
            e.delivery_rate.unwrap_or(0.0),
            e.fixed_cost,
            e.latency_deviation,
            e.chunk_target,
            e.parallelism
        );
    });
    println!(
        "{}: done {} at {:.2} s (+ {:.2} s INIT and FINALIZE), ideal {:.2} s, {} bytes sent for {}",
        sc.name,
        r.completed,
        r.finished_at,
        link.opening_time() + r.closing,
        sc.ideal,
        r.bytes_sent,
        sc.file
    );
}
