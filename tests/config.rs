//! Settings from the outside: the example file, the README's Configuration section, and the
//! `chunkwise config` and `chunkwise upload --config/--preset` commands run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chunkwise::emulator::{Command as ApiCommand, Emulator, EmulatorHandle, demo_credentials};
use chunkwise::settings::{KEYS, LoadOptions, Origin, PRESETS, Settings};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary with no `X_*` or `CHUNKWISE_*` variables from the test's own environment.
fn chunkwise() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chunkwise"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("X_") || n.starts_with("CHUNKWISE_") || n == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Runs `cmd` off the async runtime (the test's emulator keeps serving meanwhile).
async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Runs `cmd` and returns its stdout and stderr after checking it succeeded.
async fn succeed(cmd: Command) -> (String, String) {
    let out = output(cmd).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_file_loads_validates_and_documents_every_key() {
    let path = repo("examples/chunkwise.toml");
    let settings = Settings::load(LoadOptions {
        file: Some(path.clone()),
        ..LoadOptions::default()
    })
    .unwrap();
    settings.engine_config().unwrap();
    assert!(matches!(
        settings.origin("scheduler.max_parallelism"),
        Some(Origin::File { line: Some(_), .. })
    ));
    let example = std::fs::read_to_string(&path).unwrap();
    for key in KEYS {
        let section = format!("[{}]", key.section());
        let at = example
            .find(&section)
            .unwrap_or_else(|| panic!("no {section}"));
        let body = &example[at..];
        let body = &body[..body[1..].find("\n[").map_or(body.len(), |i| i + 1)];
        assert!(
            body.contains(&format!("\n{} = ", key.field()))
                || body.contains(&format!("\n# {} = ", key.field())),
            "the example does not show {}",
            key.name
        );
    }
    let out = chunkwise()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
}

#[test]
fn the_readme_documents_every_key_and_preset() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let start = readme
        .find("\n## Configuration")
        .expect("a Configuration section");
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    for key in KEYS {
        assert!(
            section.contains(&format!("`{}`", key.field())),
            "README Configuration lacks {}",
            key.name
        );
    }
    // Each key's row shows the real default, as `config show` writes it.
    let shown = Settings::default().to_toml();
    for key in KEYS {
        let Some(line) = shown
            .lines()
            .find(|l| l.starts_with(&format!("{} = ", key.field())))
        else {
            continue; // unset by default (base_url, seed)
        };
        let value = line[key.field().len() + 3..]
            .split(" #")
            .next()
            .unwrap()
            .trim();
        if key.name == "checkpoint.dir" {
            continue; // depends on the user's directories
        }
        let row = format!("| `{}` | `{value}` |", key.field());
        assert!(
            section.contains(&row),
            "README row for {} should start {row}",
            key.name
        );
    }
    for p in PRESETS {
        assert!(section.contains(&format!("`{}`", p.name)), "{}", p.name);
    }
    assert!(section.contains("CHUNKWISE_SCHEDULER__MAX_PARALLELISM"));
}

#[test]
fn config_show_masks_every_credential() {
    let secrets = [
        ("X_API_KEY", "fakeConsumerKey0123456789"),
        ("X_API_SECRET", "fakeConsumerSecretABCDEFGHIJ"),
        ("X_ACCESS_TOKEN", "12345-fakeAccessTokenKLMNOP"),
        ("X_ACCESS_TOKEN_SECRET", "fakeTokenSecretQRSTUVWXYZ"),
        ("X_BEARER_TOKEN", "AAAAfakeBearerTokenZZZZ"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[scheduler]\nmax_parallelism = 3\n").unwrap();
    let out = chunkwise()
        .envs(secrets)
        .env("CHUNKWISE_RETRY__MAX_ATTEMPTS", "7")
        .args(["config", "show", "--preset", "wifi", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for (var, value) in secrets {
        // Neither the value nor any 6-character piece of it.
        for piece in value.as_bytes().windows(6) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(
                !stdout.contains(piece) && !stderr.contains(piece),
                "{var}'s value leaked ({piece}):\n{stdout}{stderr}"
            );
        }
        assert!(
            stdout.contains(&format!("{var:<22} set (hidden)")),
            "{var}:\n{stdout}"
        );
    }
    assert!(stdout.contains("in use: OAuth 1.0a"), "{stdout}");
    // The origins of the layers are shown.
    assert!(stdout.contains("# preset wifi"), "{stdout}");
    assert!(
        stdout.contains("max_parallelism = 3") && stdout.contains("c.toml line 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("max_attempts = 7") && stdout.contains("CHUNKWISE_RETRY__MAX_ATTEMPTS"),
        "{stdout}"
    );
    // What it printed is a valid settings file with the same values.
    let shown = dir.path().join("shown.toml");
    std::fs::write(&shown, &stdout).unwrap();
    let back = Settings::load(LoadOptions {
        file: Some(shown),
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(back.scheduler().adaptive.max_parallelism, 3);
    assert_eq!(back.retry().max_attempts, 7);
    assert_eq!(
        back.scheduler().adaptive.initial_chunk,
        4 << 20,
        "the wifi preset's"
    );

    // Not set: said so.
    let out = chunkwise().args(["config", "show"]).output().unwrap();
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains(&format!("{:<22} not set", "X_BEARER_TOKEN")),
        "{stdout}"
    );
}

#[test]
fn config_check_lists_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[scheduler]\nchunk_size = 0\nrequest_deadline = \"5s\"\n",
    )
    .unwrap();
    let out = chunkwise()
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    let f = file.display().to_string();
    assert!(
        stdout.contains(&format!("scheduler.chunk_size = 0 ({f} line 2)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("scheduler.request_deadline = \"5s\" ({f} line 3)")),
        "{stdout}"
    );
    assert!(stderr.contains("2 invalid settings"), "{stderr}");

    // An unknown preset is named with the choices.
    let out = chunkwise()
        .args(["config", "check", "--preset", "fast"])
        .arg(repo("examples/chunkwise.toml"))
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.contains("preset = \"fast\""), "{stdout}");
    assert!(
        stdout.contains("cellular, wifi, metered, background"),
        "{stdout}"
    );
}

/// An emulator accepting the demo credentials, and a temporary directory holding a PNG of
/// `len` bytes.
async fn emulator_and_media(len: usize) -> (EmulatorHandle, tempfile::TempDir, PathBuf) {
    let emu = Emulator::builder()
        .credentials(demo_credentials())
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("clip.png");
    std::fs::write(&media, vec![7u8; len]).unwrap();
    (emu, dir, media)
}

#[tokio::test]
async fn upload_takes_config_preset_and_flags_in_that_order() {
    let (emu, dir, media) = emulator_and_media(300 * 1024).await;
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\n\n[scheduler]\nchunk_size = \"64 KiB\"\nparallelism = 2\n",
            emu.base_url()
        ),
    )
    .unwrap();
    let run = |extra: &'static [&'static str], env: &'static [(&'static str, &'static str)]| {
        let mut cmd = chunkwise();
        cmd.envs(env.iter().copied())
            .args(["--quiet", "upload", "--preset", "metered", "--config"])
            .arg(&config)
            .args(extra)
            .arg(&media);
        cmd
    };

    // The file's pinned chunk size (over the preset's auto) shapes the APPENDs.
    let (stdout, _) = succeed(run(&[], &[])).await;
    let id = stdout.trim().to_string();
    let sizes = |id: &str| -> Vec<u64> {
        emu.request_log()
            .into_iter()
            .filter(|r| r.command == ApiCommand::Append && r.media_id.as_deref() == Some(id))
            .map(|r| r.body_bytes)
            .collect()
    };
    const K: u64 = 1024;
    assert_eq!(sizes(&id), [64 * K, 64 * K, 64 * K, 64 * K, 44 * K]);

    // An environment variable beats the file, and a flag beats both.
    let env = &[("CHUNKWISE_SCHEDULER__CHUNK_SIZE", "128KiB")];
    let (stdout, _) = succeed(run(&[], env)).await;
    assert_eq!(sizes(stdout.trim()), [128 * K, 128 * K, 44 * K]);
    let (stdout, _) = succeed(run(&["--chunk-size", "100KiB"], env)).await;
    assert_eq!(sizes(stdout.trim()), [100 * K, 100 * K, 100 * K]);

    // An invalid value stops the upload before any request, naming its source.
    let before = emu.request_log().len();
    let out = output(run(&["--parallel", "0"], &[])).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("scheduler.parallelism = 0 (command line --parallel)"),
        "{stderr}"
    );
    assert_eq!(emu.request_log().len(), before);
    emu.shutdown().await;
}

#[tokio::test]
async fn json_logs_carry_structured_progress() {
    // 16 segments of exactly the pinned 64 KiB.
    let (emu, _dir, media) = emulator_and_media(1024 * 1024).await;
    let mut cmd = chunkwise();
    cmd.args([
        "--log-format",
        "json",
        "upload",
        "--chunk-size",
        "64KiB",
        "--base-url",
    ])
    .arg(emu.base_url().as_str())
    .arg(&media);
    let (_, stderr) = succeed(cmd).await;
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let progress: Vec<_> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "progress")
        .collect();
    let last = progress
        .last()
        .unwrap_or_else(|| panic!("no progress event: {stderr}"));
    assert_eq!(last["target"], "chunkwise::progress");
    assert_eq!(last["fields"]["bytes_acked"], 1024 * 1024);
    assert_eq!(last["fields"]["total_bytes"], 1024 * 1024);
    assert_eq!(last["fields"]["chunk_size"], 64 * 1024);
    assert!(last["fields"]["max_in_flight"].as_u64().unwrap() >= 1);
    assert!(last["fields"]["rate_bytes_per_sec"].as_u64().unwrap() > 0);
    // --quiet silences it.
    let mut cmd = chunkwise();
    cmd.args(["--quiet", "--log-format", "json", "upload", "--base-url"])
        .arg(emu.base_url().as_str())
        .arg(&media);
    let (_, stderr) = succeed(cmd).await;
    assert_eq!(stderr, "");
    emu.shutdown().await;
}
