//! The `kappa` binary's commands, run as a user would.

mod support;

use std::process::Command;
use support::{on_both_brokers, real_kafka, On};

fn kappa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(args)
        .output()
        .expect("run kappa")
}

#[test]
fn simulate_prints_a_market_summary() {
    let out = kappa(&["simulate", "--count", "20000", "--seed", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("20000 commands -> "), "{text}");
    assert!(text.contains("TCS"), "{text}");
    // Same seed, same output (apart from the timing line).
    let again =
        String::from_utf8(kappa(&["simulate", "--count", "20000", "--seed", "3"]).stdout).unwrap();
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("done in"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&text), strip(&again));
}

#[test]
fn bad_instrument_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("kappa-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[[instrument]]\nsymbol = \"X\"\ntick_size = \"0\"\n").unwrap();
    let out = kappa(&["simulate", "--instruments", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
}

on_both_brokers!(demo_runs_the_pipeline_and_its_consistency_check_passes);

fn demo_runs_the_pipeline_and_its_consistency_check_passes(on: On) {
    let mut args = vec!["demo", "--count", "5000", "--seed", "8", "--no-serve"];
    if on == On::Kafka {
        args.extend(["--brokers", real_kafka()]);
    }
    let out = kappa(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match on {
        On::Mock => assert!(
            text.contains("embedded Kafka broker at 127.0.0.1:"),
            "{text}"
        ),
        On::Kafka => {
            assert!(
                text.contains(&format!("Kafka cluster at {}", real_kafka())),
                "{text}"
            );
            // A fresh namespace per run: the consistency check needs empty topics.
            assert!(text.contains("prefixed \"demo-"), "{text}");
        }
    }
    assert!(text.contains("kcat -b 127.0.0.1:"), "{text}");
    assert!(text.contains("consistency check: OK"), "{text}");
    assert!(text.contains("consumed 5000"), "{text}");
}

#[test]
fn every_job_has_help() {
    for (bin, flags) in [
        (
            env!("CARGO_BIN_EXE_order-generator"),
            &[
                "--rate",
                "--count",
                "--instruments",
                "--traders",
                "--seed",
                "--from-file",
                "--brokers",
                "-X",
            ][..],
        ),
        (
            env!("CARGO_BIN_EXE_match-maker"),
            &[
                "--group",
                "--brokers",
                "--transactional-id",
                "--idle-exit-ms",
                "-X",
            ][..],
        ),
        (
            env!("CARGO_BIN_EXE_market-view"),
            &["--bind", "--brokers", "--max-body", "--tape", "-X"][..],
        ),
        (
            env!("CARGO_BIN_EXE_kappa"),
            &["demo", "broker", "simulate"][..],
        ),
    ] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        for f in flags {
            assert!(help.contains(f), "{bin} --help lacks {f}:\n{help}");
        }
    }
}

/// `kappa soak` on the real broker, briefly: every job runs as a process, is sampled (RSS and,
/// for the consumers, lag), and catches up once the flow stops; the summary names all four.
#[test]
fn kafka_soak_samples_every_job_and_ends_caught_up() {
    let prefix = format!("soaktest-{}.", std::process::id());
    let out = kappa(&[
        "soak",
        "--brokers",
        real_kafka(),
        "--topic-prefix",
        &prefix,
        "--rate",
        "500",
        "--minutes",
        "0.1",
        "--interval-s",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text.split("summary").nth(1).expect("a summary");
    for job in [
        "match-maker",
        "sma-calculator",
        "profit-calculator",
        "market-view",
    ] {
        let line = summary
            .lines()
            .find(|l| l.starts_with(job))
            .unwrap_or_else(|| panic!("{job} in the summary:\n{text}"));
        let rss: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(rss > 1.0, "{job} was sampled: {line}");
    }
    // The last sample: all 3 000 orders published and every group caught up (≤ one commit
    // marker per partition).
    let last = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .unwrap();
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[1], "3000", "{last}");
    let lags: Vec<i64> = last
        .split('/')
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(lags.len(), 3, "{last}");
    assert!(lags.iter().all(|&l| l <= 4), "caught up: {last}");
}
