//! `chunkwise bench` end to end: a short real run through the child-process path.
#![cfg(feature = "cli")]

use std::process::Command;

/// Two strategies over the clean 10 Mbit/s link with a 2 s ideal: a few seconds.
#[test]
fn quick_bench_runs_cells_as_child_processes_and_writes_the_table() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwise"))
        .args([
            "bench",
            "--quick",
            "--links",
            "constant-10mbit-40ms",
            "--strategies",
            "1mib-x3,default",
            "--target-secs",
            "2",
            "--plot",
            "constant-10mbit-40ms/1mib-x3",
            "--quiet",
            "--out",
        ])
        .arg(out.path())
        // Credentials in the environment must not reach the child (it uses the emulator's).
        .env("X_BEARER_TOKEN", "not-for-the-emulator")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bench.json")).unwrap()).unwrap();
    let links = json["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    let file_bytes = links[0]["file_bytes"].as_u64().unwrap();
    // 2 s ideal at 10 Mbit/s: (2 - 3 × 40 ms) × 1.25 MB/s.
    assert!(file_bytes.abs_diff(2_350_000) <= 1024, "{file_bytes}");
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for (cell, strategy) in cells.iter().zip(["1mib-x3", "default"]) {
        assert_eq!(cell["strategy"], strategy);
        assert_eq!(cell["outcome"]["status"], "ok", "{cell}");
        let report = &cell["report"];
        assert_eq!(report["total_bytes"].as_u64(), Some(file_bytes));
        // The ideal is a lower bound of the completion time (a little slack for the clocks of
        // two processes).
        let elapsed = report["elapsed"]["secs"].as_f64().unwrap()
            + report["elapsed"]["nanos"].as_f64().unwrap() / 1e9;
        let ideal = cell["ideal_secs"].as_f64().unwrap();
        assert!(ideal > 1.9 && elapsed > ideal * 0.98, "{ideal} {elapsed}");
        assert!(!report["trace"].as_array().unwrap().is_empty());
        if cfg!(target_os = "linux") {
            assert!(report["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
        }
        assert_eq!(cell["link_stats"]["resets"], 0);
    }
    // Three 1 MiB segments (the last one short), all in flight at once.
    assert_eq!(cells[0]["report"]["segments"], 3);
    assert_eq!(cells[0]["report"]["max_in_flight"], 3);

    let md = std::fs::read_to_string(out.path().join("bench.md")).unwrap();
    assert!(md.contains("## constant-10mbit-40ms"), "{md}");
    assert!(md.contains("| 1mib-x3 | ok |"), "{md}");
    assert!(md.contains("| default | ok |"), "{md}");
    assert!(md.contains("Best on constant-10mbit-40ms: **"), "{md}");
    // The table also goes to stdout.
    assert_eq!(String::from_utf8_lossy(&output.stdout), md);
    let svg =
        std::fs::read_to_string(out.path().join("plot-constant-10mbit-40ms-1mib-x3.svg")).unwrap();
    assert!(svg.contains("<polyline"));
}

#[test]
fn unknown_strategies_and_links_fail_before_running() {
    let out = tempfile::tempdir().unwrap();
    for args in [["--strategies", "warp"], ["--links", "no-such-link"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_chunkwise"))
            .arg("bench")
            .args(args)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("unknown"), "{stderr}");
    }
    assert!(!out.path().join("bench.json").exists());
}
