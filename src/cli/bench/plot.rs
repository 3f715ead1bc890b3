//! An SVG plot of one cell over time: segment sizes, APPENDs in flight, and goodput against
//! the link's capacity. Hand-written SVG: three panels of lines and dots do not need a
//! plotting crate.

use std::fmt::Write as _;

use chunkwise::engine::{AttemptOutcome, AttemptRecord};
use chunkwise::link::Schedule;

/// Width of the plot, in SVG units.
const WIDTH: f64 = 900.0;
/// Height of one panel.
const PANEL_HEIGHT: f64 = 150.0;
/// Space left of the panels (y labels), above each panel (title) and below the last (x labels).
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PANEL_TOP: f64 = 28.0;
const BOTTOM: f64 = 46.0;

/// Goodput and capacity are averaged over bins of this many seconds, at least.
///
/// Source: reasonable default; Mahimahi traces are often summarised per second (the link
/// summaries here use 1 s windows too).
const MIN_BIN_SECS: f64 = 1.0;
/// At most this many bins across the plot.
///
/// Source: reasonable default; a few pixels per bin at [`WIDTH`].
const MAX_BINS: f64 = 300.0;

/// What to plot.
#[derive(Debug)]
pub(crate) struct PlotInput<'a> {
    /// Title line.
    pub(crate) title: String,
    /// The cell's APPEND attempts.
    pub(crate) trace: &'a [AttemptRecord],
    /// The upload's completion time, in seconds (the x range).
    pub(crate) elapsed_secs: f64,
    /// The link's uplink schedule and where on it the upload started, in seconds.
    pub(crate) capacity: Option<(&'a Schedule, f64)>,
}

/// The bin width for a plot of `secs` seconds.
fn bin_width(secs: f64) -> f64 {
    (secs / MAX_BINS).max(MIN_BIN_SECS)
}

/// Successful payload bytes per bin, each attempt's bytes spread evenly over its request
/// time, in Mbit/s.
pub(crate) fn goodput_bins(trace: &[AttemptRecord], secs: f64) -> Vec<f64> {
    let width = bin_width(secs);
    let n = (secs / width).ceil().max(1.0) as usize;
    let mut bits = vec![0.0; n];
    for a in trace
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Success)
    {
        let (s, e) = (a.start_ms / 1e3, (a.end_ms / 1e3).max(a.start_ms / 1e3));
        let total = a.bytes as f64 * 8.0;
        if e <= s {
            let i = ((s / width) as usize).min(n - 1);
            bits[i] += total;
            continue;
        }
        let first = (s / width) as usize;
        let last = ((e / width) as usize).min(n - 1);
        for (i, slot) in bits.iter_mut().enumerate().take(last + 1).skip(first) {
            let lo = s.max(i as f64 * width);
            let hi = e.min((i + 1) as f64 * width);
            if hi > lo {
                *slot += total * (hi - lo) / (e - s);
            }
        }
    }
    bits.into_iter().map(|b| b / width / 1e6).collect()
}

/// APPENDs in flight over time: `(t, n)` steps.
pub(crate) fn in_flight_steps(trace: &[AttemptRecord]) -> Vec<(f64, usize)> {
    let mut events: Vec<(f64, i64)> = trace
        .iter()
        .flat_map(|a| [(a.start_ms / 1e3, 1), (a.end_ms.max(a.start_ms) / 1e3, -1)])
        .collect();
    // Ends before starts at the same instant, so back-to-back requests do not count twice.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut level: i64 = 0;
    let mut steps = vec![(0.0, 0)];
    for (t, d) in events {
        level += d;
        steps.push((t, usize::try_from(level).unwrap_or(0)));
    }
    steps
}

/// The SVG.
pub(crate) fn render_svg(input: &PlotInput<'_>) -> String {
    let secs = input.elapsed_secs.max(1e-3);
    let height = 3.0 * (PANEL_HEIGHT + PANEL_TOP) + BOTTOM;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="14" font-size="13">{}</text>"#,
        escape(&input.title)
    );

    // Panel 1: segment size of every attempt.
    let chunk_max = input
        .trace
        .iter()
        .map(|a| a.bytes as f64 / 1_048_576.0)
        .fold(0.0, f64::max);
    let p = Panel::new(
        0,
        secs,
        chunk_max,
        "segment size (MiB) of each attempt, at its end; red: failed",
    );
    p.frame(&mut svg);
    // Failures last, so that they are drawn on top.
    let (ok, failed): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) = input
        .trace
        .iter()
        .partition(|a| a.outcome == AttemptOutcome::Success);
    for (attempts, color, r) in [(ok, "#2a7", 2.5), (failed, "#d33", 3.5)] {
        for a in attempts {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{color}"/>"#,
                p.x(a.end_ms.max(a.start_ms) / 1e3),
                p.y(a.bytes as f64 / 1_048_576.0)
            );
        }
    }

    // Panel 2: APPENDs in flight.
    let steps = in_flight_steps(input.trace);
    let most = steps.iter().map(|s| s.1).max().unwrap_or(0) as f64;
    let p = Panel::new(1, secs, most, "APPENDs in flight");
    p.frame(&mut svg);
    let mut points = Vec::new();
    let mut prev = 0.0;
    for (t, n) in steps {
        points.push((t, prev));
        points.push((t, n as f64));
        prev = n as f64;
    }
    points.push((secs, prev));
    p.polyline(&mut svg, &points, "#36c");

    // Panel 3: goodput and capacity.
    let width = bin_width(secs);
    let goodput = goodput_bins(input.trace, secs);
    let capacity: Vec<f64> = match input.capacity {
        Some((schedule, start)) => (0..goodput.len())
            .map(|i| {
                let from = std::time::Duration::from_secs_f64(start + i as f64 * width);
                schedule.mean_rate(from, std::time::Duration::from_secs_f64(width)) / 1e6
            })
            .collect(),
        None => Vec::new(),
    };
    let top = goodput
        .iter()
        .chain(capacity.iter())
        .copied()
        .fold(0.0, f64::max);
    let title = if capacity.is_empty() {
        format!(
            "goodput, Mbit/s per {width:.0} s (successful APPEND bytes spread over their request time)"
        )
    } else {
        format!(
            "goodput (blue; successful APPEND bytes spread over their request time) and uplink capacity (grey), Mbit/s per {width:.0} s"
        )
    };
    let p = Panel::new(2, secs, top, &title);
    p.frame(&mut svg);
    let series = |values: &[f64]| -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                [
                    (i as f64 * width, *v),
                    (((i + 1) as f64 * width).min(secs), *v),
                ]
            })
            .collect()
    };
    if !capacity.is_empty() {
        p.polyline(&mut svg, &series(&capacity), "#999");
    }
    p.polyline(&mut svg, &series(&goodput), "#36c");
    p.x_axis(&mut svg);
    svg.push_str("</svg>\n");
    svg
}

/// One panel's frame and scales.
struct Panel {
    top: f64,
    secs: f64,
    /// The largest value plotted (labelled).
    data_max: f64,
    /// The top of the scale, a little above `data_max`.
    y_max: f64,
    title: String,
}

impl Panel {
    fn new(index: usize, secs: f64, data_max: f64, title: &str) -> Panel {
        Panel {
            top: index as f64 * (PANEL_HEIGHT + PANEL_TOP) + PANEL_TOP + 8.0,
            secs,
            data_max,
            y_max: if data_max > 0.0 { data_max * 1.1 } else { 1.0 },
            title: title.to_string(),
        }
    }

    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.secs).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        self.top + PANEL_HEIGHT - (v / self.y_max).clamp(0.0, 1.0) * PANEL_HEIGHT
    }

    fn frame(&self, svg: &mut String) {
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##,
            self.top,
            WIDTH - LEFT - RIGHT
        );
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{:.1}">{}</text>"#,
            self.top - 5.0,
            escape(&self.title)
        );
        for frac in [0.0, 0.5, 1.0] {
            let v = self.data_max * frac;
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                self.y(v) + 4.0,
                short_number(v)
            );
        }
    }

    fn polyline(&self, svg: &mut String, points: &[(f64, f64)], color: &str) {
        let pts: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", self.x(*t), self.y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
    }

    fn x_axis(&self, svg: &mut String) {
        let step = nice_step(self.secs / 8.0);
        let mut t = 0.0;
        while t <= self.secs + 1e-9 {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                self.x(t),
                self.top + PANEL_HEIGHT + 14.0,
                short_number(t)
            );
            t += step;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the upload started</text>"#,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            self.top + PANEL_HEIGHT + 30.0
        );
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-3);
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow)
}

fn short_number(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(start: f64, end: f64, bytes: u64, outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord {
            segment: 0,
            attempt: 1,
            bytes,
            start_ms: start * 1e3,
            end_ms: end * 1e3,
            outcome,
            in_flight: 1,
            app_limited: false,
        }
    }

    #[test]
    fn goodput_spreads_bytes_over_request_time() {
        // 1.25 MB over [0, 2) s: 5 Mbit/s in both 1 s bins; the failure counts nothing.
        let trace = [
            attempt(0.0, 2.0, 1_250_000, AttemptOutcome::Success),
            attempt(2.0, 3.0, 1_000_000, AttemptOutcome::Timeout),
        ];
        let bins = goodput_bins(&trace, 3.0);
        assert_eq!(bins.len(), 3);
        assert!((bins[0] - 5.0).abs() < 1e-9 && (bins[1] - 5.0).abs() < 1e-9);
        assert_eq!(bins[2], 0.0);
        // Long uploads get wider bins.
        assert_eq!(goodput_bins(&trace, 600.0).len(), 300);
    }

    #[test]
    fn in_flight_counts_overlaps() {
        let trace = [
            attempt(0.0, 2.0, 1, AttemptOutcome::Success),
            attempt(1.0, 3.0, 1, AttemptOutcome::Success),
            attempt(2.0, 4.0, 1, AttemptOutcome::Success),
        ];
        let steps = in_flight_steps(&trace);
        let levels: Vec<usize> = steps.iter().map(|s| s.1).collect();
        assert_eq!(levels, [0, 1, 2, 1, 2, 1, 0]);
    }

    #[test]
    fn svg_has_three_panels_and_every_attempt() {
        let trace = [
            attempt(0.0, 2.0, 1 << 20, AttemptOutcome::Success),
            attempt(2.0, 3.0, 1 << 20, AttemptOutcome::Timeout),
        ];
        let schedule = Schedule::constant(8_000_000).unwrap();
        let svg = render_svg(&PlotInput {
            title: "lossy × 1mib-x3 <test>".into(),
            trace: &trace,
            elapsed_secs: 3.0,
            capacity: Some((&schedule, 0.0)),
        });
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert_eq!(svg.matches("fill=\"#d33\"").count(), 1);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("&lt;test&gt;"));
        assert!(svg.contains("uplink capacity"));
    }

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(7.5), 10.0);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(0.3), 0.5);
    }
}
