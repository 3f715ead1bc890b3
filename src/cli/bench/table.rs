//! The results of a run (`bench.json`) and their markdown table (`bench.md`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::cell::{CellOutcome, CellResult};
use crate::cli::progress::size;

/// One link of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LinkInfo {
    /// Its name.
    pub(crate) name: String,
    /// `LinkProfile::summary`.
    pub(crate) summary: String,
    /// The size of the file uploaded over it.
    pub(crate) file_bytes: u64,
    /// The ideal time of that file from schedule time 0, in seconds.
    pub(crate) ideal_secs: f64,
}

/// One strategy of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StrategyInfo {
    /// Its name.
    pub(crate) name: String,
    /// What it is.
    pub(crate) description: String,
}

/// Everything a run measured: what `bench.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BenchRun {
    /// The command line that ran it.
    pub(crate) command: String,
    /// The target ideal time per link, in seconds.
    pub(crate) target_secs: f64,
    /// Cells run at once.
    pub(crate) jobs: usize,
    /// CPUs available to the harness.
    pub(crate) cpus: Option<usize>,
    /// When the run started, in milliseconds since the Unix epoch.
    pub(crate) started_unix_ms: Option<f64>,
    /// How long the whole run took, in seconds.
    pub(crate) wall_secs: f64,
    /// The links, in run order.
    pub(crate) links: Vec<LinkInfo>,
    /// The strategies, in table order.
    pub(crate) strategies: Vec<StrategyInfo>,
    /// Every cell.
    pub(crate) cells: Vec<CellResult>,
}

impl BenchRun {
    /// The cell of `link` × `strategy`.
    pub(crate) fn cell(&self, link: &str, strategy: &str) -> Option<&CellResult> {
        self.cells
            .iter()
            .find(|c| c.link == link && c.strategy == strategy)
    }

    /// The fastest successful cell over `link` (the first of equals).
    pub(crate) fn best(&self, link: &str) -> Option<&CellResult> {
        self.cells
            .iter()
            .filter(|c| c.link == link)
            .filter_map(|c| c.elapsed_secs().map(|s| (c, s)))
            .fold(
                None,
                |best: Option<(&CellResult, f64)>, (c, s)| match best {
                    Some((_, b)) if b <= s => best,
                    _ => Some((c, s)),
                },
            )
            .map(|(c, _)| c)
    }

    /// How much slower than the best of its link a successful cell was, in percent.
    pub(crate) fn distance_pct(&self, cell: &CellResult) -> Option<f64> {
        let best = self.best(&cell.link)?.elapsed_secs()?;
        let mine = cell.elapsed_secs()?;
        (best > 0.0).then(|| (mine / best - 1.0) * 100.0)
    }
}

/// How much of a failure's message the table shows.
///
/// Source: reasonable default; enough for the error's kind and segment (the child's one-line
/// errors start with them), short enough for a table cell.
const FAILURE_CHARS: usize = 100;

/// The result column of a cell.
fn outcome_text(c: &CellResult) -> String {
    match &c.outcome {
        CellOutcome::Ok => "ok".to_string(),
        CellOutcome::Timeout { cap_secs } => format!("timeout ({cap_secs:.0} s cap)"),
        CellOutcome::Failed { error } => {
            // Keep the table readable and the markdown intact; bench.json has it all.
            let error = error.strip_prefix("error: ").unwrap_or(error);
            let short: String = error.chars().take(FAILURE_CHARS).collect();
            let ellipsis = if error.chars().count() > FAILURE_CHARS {
                "…"
            } else {
                ""
            };
            format!("failed: {}{ellipsis}", short.replace('|', "/"))
        }
    }
}

/// The markdown table of a run.
pub(crate) fn render_markdown(run: &BenchRun) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# chunkwise bench\n");
    let _ = writeln!(md, "Command: `{}`\n", run.command);
    let _ = writeln!(
        md,
        "Target ideal time per link {:.0} s; {} cell(s) at a time on {} CPU(s); the run took {:.1} min.\n",
        run.target_secs,
        run.jobs,
        run.cpus.map_or("?".to_string(), |n| n.to_string()),
        run.wall_secs / 60.0
    );
    let _ = writeln!(
        md,
        "Time: from the upload's start to the media being ready. Efficiency: ideal / time. \
         Failed and timed-out cells show the wall time until they ended in parentheses.\n"
    );
    for link in &run.links {
        render_link(&mut md, run, link);
    }
    render_matrix(&mut md, run);
    md
}

fn render_link(md: &mut String, run: &BenchRun, link: &LinkInfo) {
    let _ = writeln!(md, "## {}\n", link.name);
    let _ = writeln!(
        md,
        "{}  \nFile {} ({} bytes); ideal {:.1} s.\n",
        link.summary,
        size(link.file_bytes),
        link.file_bytes,
        link.ideal_secs
    );
    let _ = writeln!(
        md,
        "| strategy | result | time (s) | efficiency | goodput (Mbit/s) | retries | re-sent | APPEND p50 (ms) | APPEND p99 (ms) | peak RSS | vs best |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for strategy in &run.strategies {
        let Some(c) = run.cell(&link.name, &strategy.name) else {
            continue;
        };
        let dash = || "–".to_string();
        let (time, eff, goodput, retries, resent, p50, p99, rss) = match c.ok_report() {
            Some(r) => (
                format!("{:.1}", r.report.elapsed.as_secs_f64()),
                c.efficiency().map_or_else(dash, |e| format!("{e:.3}")),
                format!("{:.2}", r.report.goodput_bytes_per_sec * 8.0 / 1e6),
                r.report.retries.to_string(),
                size(r.report.bytes_resent),
                format!("{:.0}", r.report.latency.p50_ms),
                format!("{:.0}", r.report.latency.p99_ms),
                r.peak_rss_bytes.map_or_else(dash, size),
            ),
            None => (
                format!("({:.1})", c.wall_secs),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
            ),
        };
        let vs = match run.distance_pct(c) {
            Some(d) if d.abs() < 0.05 => "best".to_string(),
            Some(d) => format!("+{d:.1}%"),
            None => dash(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {time} | {eff} | {goodput} | {retries} | {resent} | {p50} | {p99} | {rss} | {vs} |",
            c.strategy,
            outcome_text(c)
        );
    }
    match run.best(&link.name) {
        Some(b) => {
            let _ = writeln!(
                md,
                "\nBest on {}: **{}** ({:.1} s, efficiency {:.3}).\n",
                link.name,
                b.strategy,
                b.elapsed_secs().unwrap_or_default(),
                b.efficiency().unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(md, "\nNo strategy finished on {}.\n", link.name);
        }
    }
}

/// Efficiency of every cell, links down, strategies across.
fn render_matrix(md: &mut String, run: &BenchRun) {
    let _ = writeln!(md, "## Efficiency by link and strategy\n");
    let _ = write!(md, "| link |");
    for s in &run.strategies {
        let _ = write!(md, " {} |", s.name);
    }
    let _ = write!(md, "\n|---|");
    for _ in &run.strategies {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
    for link in &run.links {
        let _ = write!(md, "| {} |", link.name);
        for s in &run.strategies {
            let text = match run.cell(&link.name, &s.name) {
                None => String::new(),
                Some(c) => match (&c.outcome, c.efficiency()) {
                    (CellOutcome::Ok, Some(e)) => {
                        let best = run
                            .best(&link.name)
                            .is_some_and(|b| b.strategy == c.strategy);
                        if best {
                            format!("**{e:.3}**")
                        } else {
                            format!("{e:.3}")
                        }
                    }
                    (CellOutcome::Timeout { .. }, _) => "timeout".to_string(),
                    _ => "failed".to_string(),
                },
            };
            let _ = write!(md, " {text} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "\nStrategies:\n");
    for s in &run.strategies {
        let _ = writeln!(md, "- `{}`: {}", s.name, s.description);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::upload::CliReport;
    use chunkwise::UploadReport;
    use chunkwise::engine::{AttemptOutcome, AttemptRecord, LatencySummary};
    use chunkwise::protocol::MediaId;
    use std::time::Duration;

    /// A successful cell taking `secs` with `ideal` seconds ideal.
    pub(crate) fn ok_cell(link: &str, strategy: &str, secs: f64, ideal: f64) -> CellResult {
        let bytes = 10_000_000;
        let trace = (0..4)
            .map(|i| AttemptRecord {
                segment: i,
                attempt: 1,
                bytes: bytes / 4,
                start_ms: f64::from(i) * secs * 250.0,
                end_ms: f64::from(i + 1) * secs * 250.0,
                outcome: AttemptOutcome::Success,
                in_flight: 1,
                app_limited: false,
            })
            .collect();
        let report = UploadReport {
            media_id: MediaId::from("1"),
            media_key: None,
            total_bytes: bytes,
            segments: 4,
            elapsed: Duration::from_secs_f64(secs),
            goodput_bytes_per_sec: bytes as f64 / secs,
            latency: LatencySummary {
                p50_ms: 250.0,
                p90_ms: 300.0,
                p99_ms: 400.0,
                max_ms: 410.0,
            },
            attempts: 5,
            retries: 1,
            control_retries: 0,
            bytes_sent: bytes + bytes / 4,
            bytes_resent: bytes / 4,
            processing_state: None,
            chunk_min: bytes / 4,
            chunk_max: bytes / 4,
            max_in_flight: 1,
            resumed_segments: 0,
            restarted: false,
            trace,
            one_shot: false,
            alt_text_set: false,
            subtitles: Vec::new(),
        };
        CellResult {
            link: link.into(),
            strategy: strategy.into(),
            file_bytes: bytes,
            ideal_secs: ideal,
            schedule_start_secs: 0.01,
            outcome: CellOutcome::Ok,
            wall_secs: secs + 0.1,
            link_stats: None,
            report: Some(CliReport {
                report,
                peak_rss_bytes: Some(20 << 20),
                started_unix_ms: Some(1.0),
            }),
        }
    }

    /// A run over links `a` and `b` with strategies `s1`..`s3`.
    pub(crate) fn fixed_run() -> BenchRun {
        let failed = CellResult {
            outcome: CellOutcome::Failed {
                error: "error: retry budget exhausted | segment 3".into(),
            },
            report: None,
            ..ok_cell("a", "s3", 0.0, 10.0)
        };
        let timeout = CellResult {
            outcome: CellOutcome::Timeout { cap_secs: 50.0 },
            report: None,
            ..ok_cell("b", "s2", 0.0, 10.0)
        };
        BenchRun {
            command: "chunkwise bench --quick".into(),
            target_secs: 10.0,
            jobs: 2,
            cpus: Some(2),
            started_unix_ms: None,
            wall_secs: 120.0,
            links: ["a", "b"]
                .map(|n| LinkInfo {
                    name: n.into(),
                    summary: format!("{n}: up 10 Mbit/s"),
                    file_bytes: 10_000_000,
                    ideal_secs: 10.0,
                })
                .to_vec(),
            strategies: ["s1", "s2", "s3"]
                .map(|n| StrategyInfo {
                    name: n.into(),
                    description: format!("strategy {n}"),
                })
                .to_vec(),
            cells: vec![
                ok_cell("a", "s1", 12.5, 10.0),
                ok_cell("a", "s2", 10.0, 10.0),
                failed,
                ok_cell("b", "s1", 20.0, 10.0),
                timeout,
                ok_cell("b", "s3", 20.0, 10.0),
            ],
        }
    }

    #[test]
    fn best_and_distance() {
        let run = fixed_run();
        assert_eq!(run.best("a").unwrap().strategy, "s2");
        // Ties go to the first in run order.
        assert_eq!(run.best("b").unwrap().strategy, "s1");
        assert!(run.best("c").is_none());
        let d = run.distance_pct(run.cell("a", "s1").unwrap()).unwrap();
        assert!((d - 25.0).abs() < 1e-9, "{d}");
        assert_eq!(run.distance_pct(run.cell("a", "s2").unwrap()), Some(0.0));
        assert_eq!(run.distance_pct(run.cell("a", "s3").unwrap()), None);
        assert_eq!(run.cell("a", "s1").unwrap().efficiency(), Some(0.8));
    }

    #[test]
    fn markdown_has_a_row_per_cell_and_the_best() {
        let md = render_markdown(&fixed_run());
        assert!(md.contains("Command: `chunkwise bench --quick`"), "{md}");
        assert!(md.contains("## a\n"), "{md}");
        assert!(
            md.contains("File 9.54 MiB (10000000 bytes); ideal 10.0 s."),
            "{md}"
        );
        assert!(
            md.contains(
                "| s1 | ok | 12.5 | 0.800 | 6.40 | 1 | 2.38 MiB | 250 | 400 | 20.00 MiB | +25.0% |"
            ),
            "{md}"
        );
        assert!(md.contains("| s2 | ok | 10.0 | 1.000 |"), "{md}");
        assert!(md.contains("| best |\n"), "{md}");
        assert!(
            md.contains("| s3 | failed: retry budget exhausted / segment 3 | (0.1) | –"),
            "{md}"
        );
        assert!(md.contains("| s2 | timeout (50 s cap) |"), "{md}");
        assert!(
            md.contains("Best on a: **s2** (10.0 s, efficiency 1.000)."),
            "{md}"
        );
        assert!(md.contains("| a | 0.800 | **1.000** | failed |"), "{md}");
        assert!(md.contains("| b | **0.500** | timeout | 0.500 |"), "{md}");
        assert!(md.contains("- `s1`: strategy s1"), "{md}");
    }

    #[test]
    fn runs_round_trip_through_json() {
        let run = fixed_run();
        let json = serde_json::to_string(&run).unwrap();
        let back: BenchRun = serde_json::from_str(&json).unwrap();
        assert_eq!(back, run);
        assert!(json.contains(r#""status":"timeout""#), "{json}");
        assert!(json.contains(r#""peak_rss_bytes":20971520"#), "{json}");
    }
}
