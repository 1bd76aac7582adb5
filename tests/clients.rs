//! Client examples run as a trader would run them, against both brokers: the Python producer
//! (confluent-kafka, installed by scripts/setup.sh into .venv-clients) routes every order to its
//! instrument's partition, and the match maker trades all of them; the same client left to its
//! default partitioner is refused `wrong_partition` — the pitfall the example exists to avoid.

mod support;

use kappa_exchange::runtime::kafka::read_topic;
use kappa_exchange::topics::TopicLayout;
use kappa_exchange::wire::{RejectMessage, TradeMessage};
use rdkafka::message::Message;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::*;

on_both_brokers!(
    python_producer_routes_every_instrument_to_its_partition,
    python_default_partitioner_is_refused_wrong_partition,
);

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-clients/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs the pinned Python client)",
        venv.display()
    );
    venv
}

/// Runs the example; returns its JSON summary line.
fn produce(p: &Pipeline, extra: &[&str]) -> serde_json::Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/python/produce_orders.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--brokers", p.bootstrap(), "--count", "140"])
        .args(extra)
        .env("KAFKA_TOPIC_PREFIX", p.prefix())
        .output()
        .expect("run the Python example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON summary line")
}

fn match_all(p: &Pipeline) -> (Vec<TradeMessage>, Vec<RejectMessage>) {
    let mut mm = match_maker(p, &["--idle-exit-ms", "1500"]);
    wait(&mut mm, Duration::from_secs(90));
    let reader = reader(p);
    let mut trades = Vec::new();
    read_topic(&reader, &p.topic("trades"), |m| {
        trades.push(serde_json::from_slice(m.payload().unwrap()).unwrap())
    })
    .unwrap();
    let mut rejects = Vec::new();
    read_topic(&reader, &p.topic("rejects"), |m| {
        rejects.push(serde_json::from_slice(m.payload().unwrap()).unwrap())
    })
    .unwrap();
    (trades, rejects)
}

fn python_producer_routes_every_instrument_to_its_partition(on: On) {
    let p = start(on, TopicLayout::default());
    let summary = produce(&p, &[]);
    assert_eq!(summary["delivered"], 140, "{summary}");
    let (trades, rejects) = match_all(&p);
    assert!(
        rejects.is_empty(),
        "no order refused: {:?}",
        rejects.iter().map(|r| &r.reason).collect::<Vec<_>>()
    );
    let traded: BTreeSet<&str> = trades.iter().map(|t| t.instrument.as_str()).collect();
    let instruments = kappa_exchange::config::load_instruments(None).unwrap();
    assert_eq!(
        traded.len(),
        instruments.len(),
        "every instrument traded: {traded:?}"
    );
}

fn python_default_partitioner_is_refused_wrong_partition(on: On) {
    let p = start(on, TopicLayout::default());
    let summary = produce(&p, &["--default-partitioner"]);
    assert_eq!(summary["delivered"], 140, "{summary}");
    let (_, rejects) = match_all(&p);
    let wrong = rejects
        .iter()
        .filter(|r| r.reason == "wrong_partition")
        .count();
    assert!(
        wrong > 0,
        "some instruments land elsewhere without an explicit partition"
    );
    let detail = &rejects
        .iter()
        .find(|r| r.reason == "wrong_partition")
        .unwrap()
        .detail;
    assert!(detail.contains("GET /instruments"), "{detail}");
}
