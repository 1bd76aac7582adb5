//! No poison pill: hostile records on every topic a job reads — `orders` (match maker), `trades`
//! (SMA and profit calculators, market-view), `book`, `order-events` and `analytics`
//! (market-view) — among valid flow, on both brokers. Every job keeps running and finishes its
//! input; every hostile input of a processing job becomes exactly one bounded reject with a
//! reason, its length and its hash; market-view counts each one it cannot decode and serves on.

mod support;

use kappa_exchange::runtime::kafka::read_topic;
use kappa_exchange::topics::TopicLayout;
use kappa_exchange::wire::{RejectMessage, REJECT_PAYLOAD_MAX};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

on_both_brokers!(every_job_survives_hostile_records_on_every_input_topic);

/// Hostile payloads (`None`: a record without a value): size, encoding, nesting, types.
fn hostile() -> Vec<(&'static str, Option<Vec<u8>>)> {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let wide = format!(
        "{{{}\"x\":1}}",
        (0..20_000)
            .map(|i| format!("\"k{i}\":{i},"))
            .collect::<String>()
    );
    vec![
        ("350 KB of 0xFF", Some(vec![0xFF; 350_000])),
        ("empty", Some(Vec::new())),
        ("no value (tombstone)", None),
        ("nesting 100 000 deep", Some(deep.into_bytes())),
        ("20 000 keys", Some(wide.into_bytes())),
        (
            "huge number",
            Some(b"{\"id\":1e999999,\"price\":-0}".to_vec()),
        ),
        (
            "NUL and invalid UTF-8",
            Some(b"{\"instrument\":\"TC\x00S\xff\xfe\",\"id\":\"\x80\"}".to_vec()),
        ),
        ("JSON of the wrong type", Some(b"[1,2,3]".to_vec())),
        ("JSON null", Some(b"null".to_vec())),
        (
            "truncated",
            Some(b"{\"id\":10,\"instrument\":\"TCS\",\"pri".to_vec()),
        ),
    ]
}

/// Produces the hostile records to `topic`, spread over its partitions, keyed with invalid UTF-8.
fn inject(p: &Pipeline, topic: &str, partitions: i32) -> usize {
    let producer: BaseProducer = p.kafka.producer().create().unwrap();
    let cases = hostile();
    for (i, (_, payload)) in cases.iter().enumerate() {
        let key = [0xC3u8, 0x28, i as u8];
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(i as i32 % partitions)
            .key(&key[..]);
        if let Some(v) = payload {
            record = record.payload(&v[..]);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    cases.len()
}

fn every_job_survives_hostile_records_on_every_input_topic(on: On) {
    let layout = TopicLayout::default();
    let p = start(on, layout.clone());
    let n = hostile().len();
    // Valid flow around the hostile records, so the jobs have real work before and after.
    let items = flow(3_000, 11);
    publish(&p, &items[..1_500]);
    inject(&p, &p.topic("orders"), layout.orders);
    publish(&p, &items[1_500..]);
    let mut mm = match_maker(&p, &["--idle-exit-ms", "1500"]);
    wait(&mut mm, Duration::from_secs(120));
    // Hostile trades after the real ones; then the analytics jobs read all of it.
    inject(&p, &p.topic("trades"), layout.trades);
    let until_end = ["--until-end", "--window", "100ms"];
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &until_end);
    let mut profit = job(&p, env!("CARGO_BIN_EXE_profit-calculator"), &until_end);
    wait(&mut sma, Duration::from_secs(120));
    wait(&mut profit, Duration::from_secs(120));

    // Each hostile input is rejected once by each job that reads it, bounded, with its length
    // and hash, naming its source record.
    let mut rejects: Vec<RejectMessage> = Vec::new();
    read_topic(&reader(&p), &p.topic("rejects"), |m| {
        let bytes = m.payload().unwrap();
        assert!(bytes.len() < 8 * 1024, "a reject of {} bytes", bytes.len());
        rejects.push(serde_json::from_slice(bytes).unwrap())
    })
    .unwrap();
    let mut by_job: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &rejects {
        *by_job
            .entry((r.job.clone(), r.source.topic.clone()))
            .or_default() += 1;
        assert!(!r.reason.is_empty() && !r.detail.is_empty(), "{r:?}");
        assert!(r.payload.len() <= REJECT_PAYLOAD_MAX);
        assert_eq!(r.payload_sha256.len(), 64);
    }
    let hostile_sizes: Vec<u64> = hostile()
        .iter()
        .map(|(_, v)| v.as_ref().map_or(0, |v| v.len() as u64))
        .collect();
    for (job, topic) in [
        ("match-maker", "orders"),
        ("sma-calculator", "trades"),
        ("profit-calculator", "trades"),
    ] {
        let got = by_job
            .get(&(job.to_string(), p.topic(topic)))
            .copied()
            .unwrap_or(0);
        assert!(
            got >= n,
            "{job}: {got} rejects of {topic}, {n} hostile inputs"
        );
        let mut sizes: Vec<u64> = rejects
            .iter()
            .filter(|r| r.job == job && r.source.topic == p.topic(topic))
            .filter(|r| r.reason != "wrong_partition" && r.reason != "duplicate_order_id")
            .map(|r| r.payload_bytes)
            .collect();
        sizes.retain(|s| hostile_sizes.contains(s));
        assert!(
            sizes.len() >= n,
            "{job}: every hostile input named by its length"
        );
    }

    // Hostile records on market-view's four topics: it starts, catches up, counts each one it
    // cannot decode, and serves.
    inject(&p, &p.topic("book"), layout.book);
    inject(&p, &p.topic("order-events"), layout.order_events);
    inject(&p, &p.topic("analytics"), layout.analytics);
    let (port, ops) = (free_port(), free_port());
    let _mv = Killed(vec![job(
        &p,
        env!("CARGO_BIN_EXE_market-view"),
        &[
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--ops-bind",
            &format!("127.0.0.1:{ops}"),
        ],
    )]);
    let stats = support::ready_stats(ops);
    assert_eq!(
        stats["feed"]["undecodable"].as_u64(),
        Some(4 * n as u64),
        "{n} hostile records on each of trades, book, order-events, analytics: {stats}"
    );
    let book: Value = ureq::get(&format!("http://127.0.0.1:{port}/book/TCS"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert!(book["bids"].is_array(), "{book}");
}
