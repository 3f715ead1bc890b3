//! `chunkwise bench`: uploads over emulated links with every strategy preset, and the table
//! of how each did against the ideal.
//!
//! For each link the file size is chosen so that the ideal completion time
//! ([`IdealTime`](chunkwise::link::IdealTime)) is about the target (60 s by default). Each
//! (link, strategy) cell gets its own emulator and link proxy in this process and runs the
//! upload as a child `chunkwise upload --strategy NAME`, so the peak memory it reports is the
//! client's. Cells run `--jobs` at a time; a cell that runs past its cap is killed and
//! reported as a timeout; failures are rows of the table, not errors of the run.
//!
//! Output in `--out`: `bench.json` (every cell with its full report and request trace),
//! `bench.md` (the table, also printed on stdout), and an SVG per `--plot LINK/STRATEGY`.

mod cell;
mod links;
mod plot;
mod strategies;
mod table;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use chunkwise::EngineConfig;
use chunkwise::link::LinkProfile;
use clap::Args;
use futures::StreamExt as _;

use self::cell::{CellResult, CellSpec};
use self::table::{BenchRun, LinkInfo, StrategyInfo};
use super::GlobalArgs;
use super::upload::unix_ms;

/// Default target ideal time per link, in seconds.
///
/// Source: issue 3 ("the file size for each link is chosen so the ideal time is about one
/// minute").
const DEFAULT_TARGET_SECS: f64 = 60.0;

/// Target ideal time of `--quick`, in seconds.
///
/// Source: issue 3 ("a `--quick` mode (target 5 s, two synthetic links)").
const QUICK_TARGET_SECS: f64 = 5.0;

/// Default cells at once.
///
/// Source: issue 3 (`--jobs N`, default 2): the machine has 2 cores and a cell's proxy and
/// client use a fraction of one at these rates.
const DEFAULT_JOBS: usize = 2;

/// Default seed of the links' faults (the same for every strategy on a link).
///
/// Source: arbitrary fixed value; runs are comparable when it does not change.
const DEFAULT_SEED: u64 = 3;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Directory for bench.json, bench.md and plots (created if missing).
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Links to run (comma-separated): built-in profile names, trace file names in --traces,
    /// or trace file paths. Default: the five synthetic links, plus four traces when --traces
    /// exists.
    #[arg(long, value_delimiter = ',')]
    links: Vec<String>,
    /// Strategies to run (comma-separated; see --list). Default: all.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// Target ideal completion time per link, in seconds (sets each link's file size).
    /// Default 60, or 5 with --quick.
    #[arg(long)]
    target_secs: Option<f64>,
    /// Quick run: target 5 s over two synthetic links (constant-10mbit-40ms, lossy).
    #[arg(long)]
    quick: bool,
    /// Cells run at once.
    #[arg(long, default_value_t = DEFAULT_JOBS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    jobs: usize,
    /// Directory of the Mahimahi traces.
    #[arg(long, default_value = links::DEFAULT_TRACES_DIR)]
    traces: PathBuf,
    /// Seed of the links' faults.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Write an SVG plot (segment sizes, APPENDs in flight, goodput vs capacity) of a cell,
    /// given as LINK/STRATEGY. Repeatable.
    #[arg(long)]
    plot: Vec<String>,
    /// Do not run: read this bench.json, and write its table (and --plot plots) again.
    #[arg(long)]
    from: Option<PathBuf>,
    /// List the strategies and the default links, and exit.
    #[arg(long)]
    list: bool,
}

/// The engine configuration of the strategy preset `name` (for `chunkwise upload
/// --strategy`).
pub(crate) fn strategy_config(name: &str) -> anyhow::Result<EngineConfig> {
    match strategies::find(name) {
        Some(p) => Ok((p.build)()),
        None => anyhow::bail!(
            "unknown strategy {name:?}; the strategies are: {}",
            strategies::names()
        ),
    }
}

pub(crate) async fn run(args: BenchArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.list {
        return print_list(&args.traces);
    }
    let run = match &args.from {
        Some(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_slice::<BenchRun>(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => run_matrix(&args, global.quiet).await?,
    };
    tokio::fs::create_dir_all(&args.out)
        .await
        .with_context(|| format!("creating {}", args.out.display()))?;
    if args.from.is_none() {
        write(
            &args.out.join("bench.json"),
            serde_json::to_vec_pretty(&run)?,
        )
        .await?;
    }
    let md = table::render_markdown(&run);
    write(&args.out.join("bench.md"), md.clone().into_bytes()).await?;
    for cell in &args.plot {
        let path = write_plot(&run, cell, &args.traces, &args.out).await?;
        if !global.quiet {
            note!("plot written to {}", path.display());
        }
    }
    super::output::stdout(&md)
}

fn print_list(traces: &Path) -> anyhow::Result<()> {
    let mut out = String::from("strategies:\n");
    for s in strategies::STRATEGIES {
        out.push_str(&format!("  {:<10} {}\n", s.name, s.description));
    }
    out.push_str("links of a full run:\n");
    for l in links::link_names(&[], false, traces) {
        out.push_str(&format!("  {l}\n"));
    }
    if !traces.is_dir() {
        out.push_str(&format!(
            "  (the traces {} are added when {} exists)\n",
            links::TRACE_LINKS.join(", "),
            traces.display()
        ));
    }
    out.push_str(&format!(
        "links of --quick: {}\n",
        links::QUICK_LINKS.join(", ")
    ));
    super::output::stdout(&out)
}

async fn write(path: &Path, bytes: Vec<u8>) -> anyhow::Result<()> {
    tokio::fs::write(path, bytes)
        .await
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs every (link, strategy) cell and collects the results.
async fn run_matrix(args: &BenchArgs, quiet: bool) -> anyhow::Result<BenchRun> {
    let started = Instant::now();
    let started_unix = SystemTime::now();
    let target_secs = args.target_secs.unwrap_or(if args.quick {
        QUICK_TARGET_SECS
    } else {
        DEFAULT_TARGET_SECS
    });
    anyhow::ensure!(
        target_secs.is_finite() && target_secs > 0.0 && target_secs <= 3600.0,
        "--target-secs must be above 0 and at most 3600"
    );
    let target = Duration::from_secs_f64(target_secs);

    let presets: Vec<&'static strategies::StrategyPreset> = if args.strategies.is_empty() {
        strategies::STRATEGIES.iter().collect()
    } else {
        args.strategies
            .iter()
            .map(|n| {
                strategies::find(n).with_context(|| {
                    format!(
                        "unknown strategy {n:?}; the strategies are: {}",
                        strategies::names()
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };

    let mut profiles: Vec<(LinkProfile, u64)> = Vec::new();
    for name in links::link_names(&args.links, args.quick, &args.traces) {
        let profile = links::resolve(&name, &args.traces).await?;
        let bytes = links::size_for_target(&profile, target);
        profiles.push((profile, bytes));
    }

    let exe = std::env::current_exe().context("finding the chunkwise executable")?;
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let mut specs = Vec::new();
    let mut link_infos = Vec::new();
    for (i, (profile, bytes)) in profiles.iter().enumerate() {
        let file = work.path().join(format!("link-{i}.mp4"));
        if !quiet {
            note!(
                "generating {} of pseudo-random bytes for {}",
                super::progress::size(*bytes),
                profile.name()
            );
        }
        super::demo::generate(file.clone(), *bytes).await?;
        let sha256 = super::demo::file_sha256(file.clone()).await?;
        link_infos.push(LinkInfo {
            name: profile.name().to_string(),
            summary: profile.summary(),
            file_bytes: *bytes,
            ideal_secs: chunkwise::link::ideal_time(
                profile,
                *bytes,
                chunkwise::link::RoundTrips::CHUNKED_UPLOAD,
            )
            .as_secs_f64(),
        });
        for preset in &presets {
            let n = specs.len();
            specs.push(CellSpec {
                profile: profile.clone(),
                strategy: preset.name,
                file: file.clone(),
                file_bytes: *bytes,
                sha256,
                seed: args.seed,
                report_path: work.path().join(format!("cell-{n}.json")),
            });
        }
    }

    let total = specs.len();
    let exe = exe.as_path();
    let mut done = 0;
    let mut cells: Vec<(usize, CellResult)> = Vec::with_capacity(total);
    let mut results = futures::stream::iter(specs.iter().enumerate())
        .map(|(i, spec)| async move { (i, cell::run_cell(exe, spec).await) })
        .buffer_unordered(args.jobs);
    while let Some((i, result)) = results.next().await {
        done += 1;
        if !quiet {
            note!("[{done}/{total}] {}", progress_line(&result));
        }
        cells.push((i, result));
    }
    drop(results);
    cells.sort_by_key(|(i, _)| *i);

    Ok(BenchRun {
        command: command_line(),
        target_secs,
        jobs: args.jobs,
        cpus: std::thread::available_parallelism().ok().map(usize::from),
        started_unix_ms: unix_ms(started_unix),
        wall_secs: started.elapsed().as_secs_f64(),
        links: link_infos,
        strategies: presets
            .iter()
            .map(|p| StrategyInfo {
                name: p.name.to_string(),
                description: p.description.to_string(),
            })
            .collect(),
        cells: cells.into_iter().map(|(_, c)| c).collect(),
    })
}

/// One line of progress for a finished cell.
fn progress_line(c: &CellResult) -> String {
    let what = match (&c.outcome, c.elapsed_secs(), c.efficiency()) {
        (cell::CellOutcome::Ok, Some(s), Some(e)) => {
            format!(
                "ok in {s:.1} s (ideal {:.1} s, efficiency {e:.3})",
                c.ideal_secs
            )
        }
        (cell::CellOutcome::Timeout { cap_secs }, ..) => format!("timeout after {cap_secs:.0} s"),
        (cell::CellOutcome::Failed { error }, ..) => format!("failed: {error}"),
        _ => "ok".to_string(),
    };
    format!("{} × {}: {what}", c.link, c.strategy)
}

/// This process's command line, quoted where a word needs it.
fn command_line() -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if let Some(first) = words.first_mut() {
        // The path of the binary differs between machines; its name does not.
        if let Some(name) = Path::new(first.as_str()).file_name() {
            let name = name.to_string_lossy().into_owned();
            if first.contains("target/release") {
                *first = format!("./target/release/{name}");
            } else {
                *first = name;
            }
        }
    }
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the plot of the cell `LINK/STRATEGY` and returns its path.
async fn write_plot(
    run: &BenchRun,
    which: &str,
    traces: &Path,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let (link, strategy) = which
        .rsplit_once('/')
        .with_context(|| format!("--plot takes LINK/STRATEGY, not {which:?}"))?;
    let cell = run
        .cell(link, strategy)
        .with_context(|| format!("no cell {link} × {strategy} in this run"))?;
    let report = cell
        .report
        .as_ref()
        .with_context(|| format!("the cell {link} × {strategy} has no report to plot"))?;
    anyhow::ensure!(
        !report.report.trace.is_empty(),
        "the cell {link} × {strategy} has no request trace"
    );
    // The capacity line needs the profile; without it the plot shows goodput alone.
    let profile = links::resolve(link, traces).await.ok();
    let title = format!(
        "{link} × {strategy}: {} in {:.1} s (ideal {:.1} s)",
        super::progress::size(cell.file_bytes),
        report.report.elapsed.as_secs_f64(),
        cell.ideal_secs
    );
    let svg = plot::render_svg(&plot::PlotInput {
        title,
        trace: &report.report.trace,
        elapsed_secs: report.report.elapsed.as_secs_f64(),
        capacity: profile
            .as_ref()
            .map(|p| (p.up().schedule(), cell.schedule_start_secs)),
    });
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let path = out.join(format!("plot-{}-{}.svg", safe(link), safe(strategy)));
    write(&path, svg.into_bytes()).await?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_strategies_name_the_known_ones() {
        let e = strategy_config("fastest").unwrap_err().to_string();
        assert!(e.contains("1mib-x3") && e.contains("default"), "{e}");
        assert!(strategy_config("4MIB-SEQ").is_ok());
    }

    #[tokio::test]
    async fn plots_are_written_for_cells_with_a_trace() {
        let run = table::tests::fixed_run();
        let dir = tempfile::tempdir().unwrap();
        let traces = dir.path();
        let path = write_plot(&run, "a/s1", traces, dir.path()).await.unwrap();
        assert_eq!(path.file_name().unwrap(), "plot-a-s1.svg");
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_eq!(svg.matches("<circle").count(), 4);
        // "a" is no profile: no capacity line.
        assert_eq!(svg.matches("<polyline").count(), 2);
        for bad in ["a-s1", "a/s3", "c/s1"] {
            assert!(
                write_plot(&run, bad, traces, dir.path()).await.is_err(),
                "{bad}"
            );
        }
    }
}
