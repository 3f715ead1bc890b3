use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::value::Value;
use tokio::time::Instant;

use super::*;
use crate::limits::MIB;
use crate::scheduler::adaptive::DEFAULT_MAX_PARALLELISM;
use crate::scheduler::{ChunkMode, ParallelismMode, PlanContext, RateCap};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn problems(b: SettingsBuilder) -> Vec<Problem> {
    match b.resolve() {
        Ok(s) => panic!("expected problems, got {s:?}"),
        Err(p) => p.0,
    }
}

/// The single problem of `b`, after checking its text names `key`, `value` and `origin`.
fn one_problem(b: SettingsBuilder, key: &str, value: &str, origin: &str) -> Problem {
    let mut ps = problems(b);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    let p = ps.remove(0);
    let text = p.to_string();
    assert_eq!(p.key, key, "{text}");
    assert!(text.contains(&format!("{key} = {value}")), "{text}");
    assert!(text.contains(origin), "{text}");
    p
}

#[test]
fn defaults_are_valid_and_built_defaults_equal_them() {
    let built = Settings::builder().build().unwrap();
    assert_eq!(built.api(), Settings::default().api());
    assert_eq!(built.scheduler(), Settings::default().scheduler());
    assert_eq!(built.retry(), Settings::default().retry());
    assert!(
        KEYS.iter()
            .all(|k| built.origin(k.name) == Some(&Origin::Default))
    );
    assert_eq!(built.provenance().iter().count(), 0);
    built.engine_config().unwrap();
    assert!(built.checkpoint_dir().is_absolute());
    assert!(built.checkpoint_dir().ends_with("chunkwise"));
}

#[test]
fn the_key_table_matches_the_file_format() {
    let s = Settings::builder()
        .base_url(Some(url::Url::parse("http://127.0.0.1:1").unwrap()))
        .retry_seed(Some(7))
        .build()
        .unwrap();
    let mut leaves = BTreeSet::new();
    for (section, v) in load::to_dict(&s) {
        let Value::Dict(_, d) = v else {
            panic!("{section} is not a table")
        };
        leaves.extend(d.keys().map(|k| format!("{section}.{k}")));
    }
    let names: BTreeSet<String> = KEYS.iter().map(|k| k.name.to_string()).collect();
    assert_eq!(leaves, names);
    assert_eq!(
        KEYS.iter().map(|k| k.section()).collect::<BTreeSet<_>>(),
        SECTIONS.into_iter().collect()
    );
    for k in KEYS {
        for d in k.depends_on {
            assert!(key(d).is_some(), "{} depends on unknown {d}", k.name);
        }
    }
}

#[test]
fn every_key_can_be_set_from_the_environment_and_copied() {
    // A non-default value for every key, written as a variable would be.
    let values = [
        ("api.version", "v1.1"),
        ("api.base_url", "http://127.0.0.1:8080/prefix"),
        ("api.media_data", "true"),
        ("api.max_append_bytes", "4 MiB"),
        ("api.control_timeout", "30s"),
        ("api.enforce_category_limits", "false"),
        ("api.one_shot", "never"),
        ("scheduler.chunk_size", "2MiB"),
        ("scheduler.parallelism", "3"),
        ("scheduler.initial_chunk", "2 MiB"),
        ("scheduler.min_chunk", "64KiB"),
        ("scheduler.target_chunk_time", "5s"),
        ("scheduler.segment_reserve", "0.5"),
        ("scheduler.initial_parallelism", "1"),
        ("scheduler.max_parallelism", "5"),
        ("scheduler.deadline_gain", "2.5"),
        ("scheduler.deadline_floor", "5s"),
        ("scheduler.request_deadline", "2m"),
        ("scheduler.stall_timeout", "off"),
        ("scheduler.byte_rate_cap", "512 KiB/s"),
        ("scheduler.request_rate_cap", "900/15m"),
        ("retry.max_attempts", "3"),
        ("retry.transient_base", "200ms"),
        ("retry.throttle_base", "2s"),
        ("retry.max_delay", "20s"),
        ("retry.budget_ratio", "0.25"),
        ("retry.budget_min", "4"),
        ("retry.max_unreachable", "5m"),
        ("retry.max_store_outage", "3m"),
        ("retry.max_wait", "20m"),
        ("retry.max_no_progress", "11m"),
        ("retry.seed", "42"),
        ("polling.default_check_after", "3s"),
        ("polling.min_check_after", "2s"),
        ("polling.max_check_after", "30s"),
        ("polling.deadline", "5m"),
        ("checkpoint.dir", "/var/lib/chunkwise"),
    ];
    assert_eq!(values.len(), KEYS.len());
    let s = Settings::builder()
        .env_vars(values.iter().map(|(k, v)| (env_var(k), *v)))
        .build()
        .unwrap();
    let defaults = Settings::default();
    let d_dict = load::to_dict(&defaults);
    let s_dict = load::to_dict(&s);
    for k in KEYS {
        let (sec, f) = (k.section(), k.field());
        let get = |d: &figment::value::Dict| match d.get(sec) {
            Some(Value::Dict(_, t)) => t.get(f).cloned(),
            _ => None,
        };
        assert_ne!(get(&d_dict), get(&s_dict), "{} was not set", k.name);
        assert_eq!(s.origin(k.name), Some(&Origin::Env(k.env_var())));
        // `copy` moves exactly this key.
        let mut c = Settings::default();
        (k.copy)(&s, &mut c);
        let c_dict = load::to_dict(&c);
        assert_eq!(get(&c_dict), get(&s_dict), "{}", k.name);
    }
    assert_eq!(s.api().max_payload(), 3 * MIB);
    assert_eq!(
        s.scheduler().adaptive.request_rate_cap,
        Some(RateCap::new(900, Duration::from_secs(900)))
    );
    assert_eq!(s.scheduler().adaptive.stall_timeout, None);
    assert_eq!(s.retry().seed, Some(42));
}

#[test]
fn precedence_is_default_preset_file_env_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.toml",
        "[scheduler]\nmax_parallelism = 5\n\n[retry]\nmax_attempts = 6\n",
    );
    let key = "scheduler.max_parallelism";
    let max = |s: &Settings| s.scheduler().adaptive.max_parallelism;

    let s = Settings::builder().build().unwrap();
    assert_eq!(
        (max(&s), s.origin(key)),
        (DEFAULT_MAX_PARALLELISM, Some(&Origin::Default))
    );

    let b = || Settings::builder().preset("cellular");
    let s = b().build().unwrap();
    assert_eq!(max(&s), 4);
    assert_eq!(s.origin(key), Some(&Origin::Preset("cellular".into())));

    let b = || b().file(&file);
    let s = b().build().unwrap();
    assert_eq!(max(&s), 5);
    assert_eq!(
        s.origin(key),
        Some(&Origin::File {
            path: file.clone(),
            line: Some(2)
        })
    );
    // The preset still supplies what the file does not set.
    assert_eq!(s.scheduler().adaptive.initial_chunk, 512 * 1024);

    let b = || b().env_vars([("CHUNKWISE_SCHEDULER__MAX_PARALLELISM", "7")]);
    let s = b().build().unwrap();
    assert_eq!(max(&s), 7);
    assert_eq!(
        s.origin(key),
        Some(&Origin::Env("CHUNKWISE_SCHEDULER__MAX_PARALLELISM".into()))
    );
    assert_eq!(s.retry().max_attempts, 6, "the file's other key stays");

    let s = b().set(key, "8").build().unwrap();
    assert_eq!(max(&s), 8);
    assert_eq!(s.origin(key), Some(&Origin::Explicit("builder".into())));

    // Typed setters win over set(), and the label names the source.
    let s = b()
        .origin("command line --max-parallelism")
        .max_parallelism(9)
        .set(key, "8")
        .build()
        .unwrap();
    assert_eq!(max(&s), 9);
    assert_eq!(
        s.origin(key).unwrap().to_string(),
        "command line --max-parallelism"
    );

    // The order of the layer calls does not matter.
    let s = Settings::builder()
        .max_parallelism(9)
        .env_vars([("CHUNKWISE_SCHEDULER__MAX_PARALLELISM", "7")])
        .file(&file)
        .preset("cellular")
        .build()
        .unwrap();
    assert_eq!(max(&s), 9);

    // LoadOptions reach the same layers.
    let s = Settings::load(LoadOptions {
        file: Some(file.clone()),
        preset: Some("wifi".into()),
        env: true,
        env_vars: Some(vec![("CHUNKWISE_RETRY__MAX_ATTEMPTS".into(), "2".into())]),
    })
    .unwrap();
    assert_eq!((max(&s), s.retry().max_attempts), (5, 2));
    assert_eq!(s.scheduler().adaptive.initial_chunk, 4 * MIB, "wifi preset");
}

#[test]
fn chunk_size_zero_in_a_file_names_key_value_range_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "zero.toml",
        "# pinned\n[scheduler]\n\nchunk_size = 0\n",
    );
    let p = one_problem(
        Settings::builder().file(&file),
        "scheduler.chunk_size",
        "0",
        &format!("{} line 4", file.display()),
    );
    assert!(
        p.message
            .contains("allowed 1 B ..= the APPEND payload limit, 5 MiB"),
        "{p}"
    );
}

#[test]
fn chunk_size_above_the_body_limit_names_the_limit_and_the_variable() {
    let p = one_problem(
        Settings::builder().env_vars([("CHUNKWISE_SCHEDULER__CHUNK_SIZE", "6MiB")]),
        "scheduler.chunk_size",
        "\"6 MiB\"",
        "environment variable CHUNKWISE_SCHEDULER__CHUNK_SIZE",
    );
    assert!(p.message.contains("5 MiB"), "{p}");
    // With base64, the same 4 MiB that fits raw is above the 3.75 MiB payload limit, and the
    // message names the keys that set the limit.
    let p = one_problem(
        Settings::builder()
            .set("scheduler.chunk_size", "4MiB")
            .media_data(true),
        "scheduler.chunk_size",
        "\"4 MiB\"",
        "builder",
    );
    assert!(p.message.contains("api.media_data = true (builder)"), "{p}");
    assert!(p.message.contains("3840 KiB"), "{p}");
}

#[test]
fn parallelism_zero_from_the_builder_is_rejected_with_the_adaptive_range() {
    let p = one_problem(
        Settings::builder()
            .origin("command line --parallel")
            .parallelism(ParallelismMode::Fixed(0)),
        "scheduler.parallelism",
        "0",
        "command line --parallel",
    );
    assert!(p.message.contains("out of range; allowed 1..=32"), "{p}");
}

#[test]
fn a_deadline_shorter_than_the_stall_time_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "d.toml",
        "[scheduler]\nrequest_deadline = \"20s\"\nstall_timeout = \"30s\"\n",
    );
    let p = one_problem(
        Settings::builder().file(&file),
        "scheduler.request_deadline",
        "\"20s\"",
        "line 2",
    );
    assert!(p.message.contains("stall_timeout"), "{p}");
    assert!(
        p.message.contains("scheduler.stall_timeout = \"30s\""),
        "{p}"
    );
    assert!(p.message.contains("line 3"), "{p}");
    // Longer than the stall time, or with stall detection off, it is accepted and pinned.
    for extra in ["", "\nstall_timeout = \"off\""] {
        let ok = write(
            dir.path(),
            "ok.toml",
            &format!("[scheduler]\nrequest_deadline = \"40s\"{extra}\n"),
        );
        let s = Settings::builder().file(&ok).build().unwrap();
        let mut strategy = (s.engine_config().unwrap().strategy)();
        assert_eq!(
            strategy.start_attempt(Instant::now(), 5 * MIB),
            Duration::from_secs(40)
        );
    }
}

#[test]
fn dependent_keys_are_blamed_on_the_dependent_and_name_both_sources() {
    let p = one_problem(
        Settings::builder()
            .env_vars([("CHUNKWISE_SCHEDULER__MAX_PARALLELISM", "2")])
            .initial_parallelism(3),
        "scheduler.initial_parallelism",
        "3",
        "builder",
    );
    assert!(
        p.message
            .contains("scheduler.max_parallelism = 2 (environment variable"),
        "{p}"
    );
    // A value wrong against defaults is blamed on itself.
    let p = one_problem(
        Settings::builder().set("retry.max_delay", "50ms"),
        "retry.max_delay",
        "\"50ms\"",
        "builder",
    );
    assert!(p.message.contains("must not exceed max_delay 50ms"), "{p}");
    // Two values each fine alone conflict: blamed once, on the dependent one.
    let p = one_problem(
        Settings::builder()
            .set("retry.transient_base", "2s")
            .env_vars([("CHUNKWISE_RETRY__MAX_DELAY", "1s")]),
        "retry.transient_base",
        "\"2s\"",
        "builder",
    );
    assert!(
        p.message.contains(
            "[with retry.max_delay = \"1s\" (environment variable CHUNKWISE_RETRY__MAX_DELAY)]"
        ),
        "{p}"
    );
}

#[test]
fn typos_are_unknown_keys_with_a_suggestion_and_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "typo.toml",
        "[scheduler]\nmax_paralelism = 4\n\n[retyr]\nmax_attempts = 2\n",
    );
    let ps = problems(Settings::builder().file(&file));
    assert_eq!(ps.len(), 2, "{ps:#?}");
    let text: Vec<String> = ps.iter().map(ToString::to_string).collect();
    assert_eq!(ps[0].key, "retyr");
    assert!(text[0].contains("did you mean retry?"), "{}", text[0]);
    assert!(text[0].contains("line 4"), "{}", text[0]);
    assert_eq!(ps[1].key, "scheduler.max_paralelism");
    assert!(
        text[1].contains("did you mean scheduler.max_parallelism?"),
        "{}",
        text[1]
    );
    assert!(text[1].contains("line 2"), "{}", text[1]);
    assert!(ps.iter().all(|p| p.value.is_none()));

    // The same from the environment and from set().
    let ps = problems(
        Settings::builder()
            .env_vars([
                ("CHUNKWISE_SCHEDULER__CHUNCK_SIZE", "1MiB"),
                ("CHUNKWISE_SCHEDULER_MIN_CHUNK", "1MiB"),
                ("CHUNKWISE_TRACES", "/somewhere"),
                ("CHUNKWISE_CONFIG", "x.toml"),
                ("HOME", "/root"),
            ])
            .set("polling.dead_line", "1m"),
    );
    let text: Vec<String> = ps.iter().map(ToString::to_string).collect();
    assert_eq!(ps.len(), 3, "{text:#?}");
    assert!(
        text.iter()
            .any(|t| t.contains("CHUNKWISE_SCHEDULER_MIN_CHUNK")
                && t.contains("did you mean CHUNKWISE_SCHEDULER__MIN_CHUNK?")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("scheduler.chunck_size")
            && t.contains("did you mean scheduler.chunk_size?")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("polling.dead_line (builder)") && t.contains("polling.deadline")),
        "{text:#?}"
    );
}

#[test]
fn credentials_in_a_file_are_rejected_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-VALUE-that-must-not-leak";
    let file = write(
        dir.path(),
        "creds.toml",
        &format!(
            "[api]\nbearer_token = \"{secret}\"\n\n[credentials]\napi_secret = \"{secret}\"\n"
        ),
    );
    let err = Settings::builder().file(&file).build().unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("api.bearer_token"), "{text}");
    assert!(text.contains("X_BEARER_TOKEN"), "{text}");
    let err = Settings::builder()
        .env_vars([("CHUNKWISE_API_SECRET", secret)])
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(err.to_string().contains("X_API_SECRET"), "{err}");
    // A base URL with a password is rejected without echoing it.
    let err = Settings::builder()
        .set("api.base_url", format!("https://user:{secret}@api.x.com"))
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(err.to_string().contains("user name or password"), "{err}");
}

#[test]
fn unknown_presets_list_the_presets() {
    let p = one_problem(
        Settings::builder().preset("cellullar"),
        "preset",
        "\"cellullar\"",
        "builder",
    );
    assert!(
        p.message.contains("cellular, wifi, metered, background"),
        "{p}"
    );
    assert!(p.message.contains("did you mean cellular?"), "{p}");
}

#[test]
fn every_preset_loads_validates_and_owns_exactly_its_keys() {
    assert_eq!(
        PRESETS.iter().map(|p| p.name).collect::<Vec<_>>(),
        ["cellular", "wifi", "metered", "background"]
    );
    for preset in PRESETS {
        let s = Settings::builder().preset(preset.name).build().unwrap();
        s.engine_config().unwrap();
        let doc = toml_edit::ImDocument::parse(preset.toml).unwrap();
        let mut named = BTreeSet::new();
        for (section, item) in doc.as_table().iter() {
            for (k, _) in item.as_table().unwrap().iter() {
                named.insert(format!("{section}.{k}"));
            }
        }
        assert!(!named.is_empty());
        let from_preset: BTreeSet<String> = s
            .provenance()
            .iter()
            .map(|(k, o)| {
                assert_eq!(o, &Origin::Preset(preset.name.into()), "{k}");
                k.to_string()
            })
            .collect();
        assert_eq!(from_preset, named, "{}", preset.name);
        assert_ne!(
            load::to_dict(&s),
            load::to_dict(&Settings::default()),
            "{} changes nothing",
            preset.name
        );
        assert!(!preset.summary.is_empty());
    }
    let metered = Settings::builder().preset("METERED").build().unwrap();
    assert_eq!(
        metered.scheduler().adaptive.byte_rate_cap,
        Some(RateCap::per_second(MIB))
    );
    let background = Settings::builder().preset("background").build().unwrap();
    assert_eq!(background.scheduler().adaptive.max_parallelism, 2);
}

#[test]
fn wrong_types_name_the_key_value_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "types.toml", "[retry]\nmax_delay = 5\n");
    let p = one_problem(
        Settings::builder().file(&file),
        "retry.max_delay",
        "5",
        "line 2",
    );
    assert!(p.message.contains("\"5s\""), "{p}");
    let p = one_problem(
        Settings::builder().set("scheduler.min_chunk", "lots"),
        "scheduler.min_chunk",
        "\"lots\"",
        "builder",
    );
    assert!(p.message.contains("not a size"), "{p}");
}

#[test]
fn malformed_and_missing_files_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "[api]\nversion = \n");
    let p = one_problem_no_value(Settings::builder().file(&bad));
    assert!(p.to_string().contains("not valid TOML"), "{p}");
    assert!(p.to_string().contains("line 2"), "{p}");
    let p = one_problem_no_value(Settings::builder().file(dir.path().join("missing.toml")));
    assert!(p.to_string().contains("cannot read"), "{p}");
}

fn one_problem_no_value(b: SettingsBuilder) -> Problem {
    let mut ps = problems(b);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    ps.remove(0)
}

#[test]
fn relative_checkpoint_dirs_are_rejected_and_home_is_expanded() {
    one_problem(
        Settings::builder().set("checkpoint.dir", "state/here"),
        "checkpoint.dir",
        "\"state/here\"",
        "builder",
    );
    if let Some(home) = dirs::home_dir() {
        let s = Settings::builder()
            .set("checkpoint.dir", "~/ckpt")
            .build()
            .unwrap();
        assert_eq!(s.checkpoint_dir(), home.join("ckpt"));
    }
}

#[test]
fn engine_config_and_client_follow_the_settings() {
    let s = Settings::builder()
        .chunk_size(ChunkMode::Fixed(2 * MIB))
        .parallelism(ParallelismMode::Fixed(3))
        .max_attempts(2)
        .control_timeout(Duration::from_secs(9))
        .processing_deadline(Duration::from_secs(99))
        .enforce_category_limits(false)
        .api_version(ApiVersion::V2)
        .base_url(Some(url::Url::parse("http://127.0.0.1:9/p").unwrap()))
        .media_data(true)
        .max_append_bytes(4 * MIB)
        .build()
        .unwrap();
    let config = s.engine_config().unwrap();
    assert_eq!(config.retry.max_attempts, 2);
    assert_eq!(config.control_timeout, Duration::from_secs(9));
    assert_eq!(config.polling.deadline, Duration::from_secs(99));
    assert!(!config.enforce_category_limits);
    let mut strategy = (config.strategy)();
    let now = Instant::now();
    let ctx = PlanContext {
        now,
        remaining_bytes: 100 * MIB,
        remaining_segments: 1000,
        min_chunk: 1,
        max_chunk: 3 * MIB,
    };
    assert_eq!(strategy.chunk_size(&ctx), 2 * MIB);
    assert_eq!(strategy.max_in_flight(now), 3);

    let client = s
        .client_builder(Credentials::bearer("test-token"))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(client.api(), ApiVersion::V2);
    assert_eq!(client.base_url().as_str(), "http://127.0.0.1:9/p");
    assert_eq!(client.append_encoding(), AppendEncoding::Base64);
    assert_eq!(client.max_append_bytes(), 4 * MIB);
}

#[test]
fn to_toml_loads_back_to_the_same_values_and_shows_origins() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::builder()
        .preset("metered")
        .env_vars([("CHUNKWISE_API__VERSION", "v1.1")])
        .retry_seed(Some(3))
        .build()
        .unwrap();
    let text = s.to_toml();
    assert!(text.contains("byte_rate_cap = \"1 MiB/s\""), "{text}");
    assert!(text.contains("# preset metered"), "{text}");
    assert!(
        text.contains("# environment variable CHUNKWISE_API__VERSION"),
        "{text}"
    );
    assert!(
        text.contains("# base_url (not set: https://upload.twitter.com (the v1.1 default))"),
        "{text}"
    );
    let file = write(dir.path(), "shown.toml", &text);
    let back = Settings::builder().file(&file).build().unwrap();
    assert_eq!(load::to_dict(&back), load::to_dict(&s));
    assert!(matches!(
        back.origin("scheduler.byte_rate_cap"),
        Some(Origin::File { line: Some(_), .. })
    ));
}

#[test]
fn only_the_resumable_engine_config_saves_checkpoints() {
    let s = Settings::builder()
        .set("checkpoint.dir", "/var/tmp/chunkwise-ckpt")
        .build()
        .unwrap();
    assert!(s.engine_config().unwrap().checkpoint_store.is_none());
    assert!(
        s.resumable_engine_config()
            .unwrap()
            .checkpoint_store
            .is_some()
    );
    assert_eq!(
        s.checkpoint_store().dir(),
        std::path::Path::new("/var/tmp/chunkwise-ckpt")
    );
}

#[test]
fn every_problem_of_a_file_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    // Nine problems: four of type or form, two unknown keys, three out of range.
    let file = write(
        dir.path(),
        "many.toml",
        "[api]\nmedia_data = \"yes\"\ncontrol_timeout = 5\n\n\
         [scheduler]\nchunk_size = \"4 MiBB\"\nmax_paralelism = 4\nparallelism = 0\n\
         initial_parallelism = \"two\"\n\n\
         [retry]\nmax_attempts = 0\nbudget_ratio = 99.0\n\n[pollling]\ndeadline = \"1m\"\n",
    );
    let ps = problems(Settings::builder().file(&file));
    let text: Vec<String> = ps.iter().map(ToString::to_string).collect();
    let keys: BTreeSet<&str> = ps.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "api.media_data",
            "api.control_timeout",
            "scheduler.chunk_size",
            "scheduler.max_paralelism",
            "scheduler.parallelism",
            "scheduler.initial_parallelism",
            "retry.max_attempts",
            "retry.budget_ratio",
            "pollling",
        ]),
        "{text:#?}"
    );
    assert_eq!(ps.len(), 9, "{text:#?}");
    // Each still names its line.
    for (key, line) in [
        ("api.media_data", 2),
        ("scheduler.chunk_size", 6),
        ("scheduler.initial_parallelism", 9),
        ("retry.budget_ratio", 13),
    ] {
        let p = ps.iter().find(|p| p.key == key).unwrap();
        assert!(p.to_string().contains(&format!("line {line}")), "{p}");
    }
    // Problems from several layers come together too.
    let ps = problems(
        Settings::builder()
            .file(&file)
            .env_vars([("CHUNKWISE_RETRY__SEED", "abc")])
            .set("polling.deadline", "soon"),
    );
    assert_eq!(ps.len(), 11, "{ps:#?}");
    assert!(ps.iter().any(|p| p.key == "retry.seed"), "{ps:#?}");
    assert!(ps.iter().any(|p| p.key == "polling.deadline"), "{ps:#?}");
}

#[test]
fn unpinned_chunk_sizes_follow_a_smaller_append_limit() {
    // The default first chunk (1 MiB) is above a 1 MB body limit: it follows the limit.
    let s = Settings::builder()
        .max_append_bytes(1_000_000)
        .build()
        .unwrap();
    assert_eq!(s.scheduler().adaptive.initial_chunk, 1_000_000);
    let origin = s.origin("scheduler.initial_chunk").unwrap().to_string();
    assert!(
        origin.contains("lowered to the APPEND payload limit"),
        "{origin}"
    );
    s.engine_config().unwrap();
    // With base64, the payload is 3/4 of the body; a preset's values follow too.
    let s = Settings::builder()
        .preset("wifi")
        .media_data(true)
        .max_append_bytes(400_000)
        .build()
        .unwrap();
    assert_eq!(s.scheduler().adaptive.initial_chunk, 300_000);
    assert_eq!(s.scheduler().adaptive.min_chunk, 256 * 1024);
    let s = Settings::builder()
        .max_append_bytes(100_000)
        .build()
        .unwrap();
    assert_eq!(s.scheduler().adaptive.min_chunk, 100_000);
    // A pinned value that conflicts is reported on its own key, naming the limit's source.
    let ps = problems(
        Settings::builder()
            .origin("command line --set")
            .set("scheduler.initial_chunk", "2MiB")
            .origin("command line --max-append-bytes")
            .max_append_bytes(1_000_000),
    );
    assert_eq!(ps.len(), 1, "{ps:#?}");
    let text = ps[0].to_string();
    assert_eq!(ps[0].key, "scheduler.initial_chunk", "{text}");
    assert!(text.contains("command line --set"), "{text}");
    assert!(text.contains("api.max_append_bytes"), "{text}");
    assert!(text.contains("command line --max-append-bytes"), "{text}");
}

#[cfg(unix)]
#[test]
fn special_and_oversized_settings_files_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    // A FIFO with no writer would block the open forever; /dev/zero would never end.
    for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
        let p = one_problem_no_value(Settings::builder().file(path));
        assert!(p.to_string().contains("not a regular file"), "{p}");
    }
    let big = dir.path().join("big.toml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    let text = line.repeat(MAX_SETTINGS_FILE_BYTES as usize / line.len() + 1);
    std::fs::write(&big, text).unwrap();
    let p = one_problem_no_value(Settings::builder().file(&big));
    assert!(p.to_string().contains("larger than 1 MiB"), "{p}");
    let binary = write(dir.path(), "bin.toml", "");
    std::fs::write(&binary, b"[api]\n\xff\xfe").unwrap();
    let p = one_problem_no_value(Settings::builder().file(&binary));
    assert!(p.to_string().contains("not UTF-8"), "{p}");
}

#[test]
fn a_section_that_is_not_a_table_is_a_wrong_type_and_the_rest_is_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "flat.toml",
        "scheduler = 5\n\n[retry]\nmax_attempts = \"many\"\n",
    );
    let ps = problems(Settings::builder().file(&file));
    let text: Vec<String> = ps.iter().map(ToString::to_string).collect();
    assert_eq!(ps.len(), 2, "{text:#?}");
    let section = ps
        .iter()
        .find(|p| p.key == "scheduler")
        .unwrap()
        .to_string();
    assert!(section.contains("must be a table"), "{section}");
    assert!(section.contains("line 1"), "{section}");
    assert!(
        ps.iter().any(|p| p.key == "retry.max_attempts"),
        "{text:#?}"
    );
}
