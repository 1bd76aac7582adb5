//! Client examples run as a trader would run them, against both brokers: the Python producer
//! (confluent-kafka, installed by scripts/setup.sh into .venv-clients) routes every order to its
//! instrument's partition, and the match maker trades all of them; the same client left to its
//! default partitioner is refused `wrong_partition` — the pitfall the example exists to avoid.
//! A quant's reader of `analytics` builds Polars DataFrames whose exact decimal figures equal the
//! topic's; and a trader's script places, retries, follows and cancels orders through the HTTP
//! API with an API key, every step checked against the topics.

mod support;

use kappa_exchange::runtime::kafka::read_topic;
use kappa_exchange::topics::TopicLayout;
use kappa_exchange::wire::{
    decode_analytics, AnalyticsMessage, OrderEventMessage, RejectMessage, TradeMessage,
};
use rdkafka::message::Message;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::*;

on_both_brokers!(
    python_producer_routes_every_instrument_to_its_partition,
    python_default_partitioner_is_refused_wrong_partition,
    python_reads_analytics_into_polars_exactly,
    python_trades_through_the_api_with_a_key,
);

/// Runs the example; returns its JSON summary line.
fn produce(p: &Pipeline, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--brokers", p.bootstrap(), "--count", "140"];
    args.extend_from_slice(extra);
    example("produce_orders.py", p, &args)
}

/// Runs `examples/python/<script>` with `args` in the pipeline's namespace; returns its JSON
/// summary line.
fn example(script: &str, p: &Pipeline, args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/python")
        .join(script);
    let out = Command::new(clients_python())
        .arg(script)
        .args(args)
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

/// The analytics of a run, read by the Python example into Polars, equal what is on the topic:
/// message counts by kind, and per instrument the bars, their total volume and the last close —
/// exact decimals computed in Rust from the same messages.
fn python_reads_analytics_into_polars_exactly(on: On) {
    let p = start(on, TopicLayout::default());
    publish_at(&p, &flow(6_000, 31), 5_000.0);
    let mut mm = match_maker(&p, &["--idle-exit-ms", "1500"]);
    wait(&mut mm, Duration::from_secs(90));
    wait_stable(&p, "trades");
    let args = ["--until-end", "--window", "100ms", "--sma", "3,5"];
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &args);
    let mut pnl = job(&p, env!("CARGO_BIN_EXE_profit-calculator"), &args);
    wait(&mut sma, Duration::from_secs(90));
    wait(&mut pnl, Duration::from_secs(90));
    wait_stable(&p, "analytics");

    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    // instrument → (bars, volume, (start of the last bar, its close))
    let mut bars: BTreeMap<String, (u64, Decimal, (i64, Decimal))> = BTreeMap::new();
    read_topic(&reader(&p), &p.topic("analytics"), |m| {
        let kind = match decode_analytics(m.payload().unwrap()).unwrap() {
            AnalyticsMessage::Bar(b) => {
                let e = bars.entry(b.instrument.clone()).or_insert((
                    0,
                    Decimal::ZERO,
                    (i64::MIN, Decimal::ZERO),
                ));
                e.0 += 1;
                e.1 += b.volume;
                if b.start_ms > e.2 .0 {
                    e.2 = (b.start_ms, b.close);
                }
                "bar"
            }
            AnalyticsMessage::Sma(_) => "sma",
            AnalyticsMessage::Pnl(_) => "pnl",
            AnalyticsMessage::Totals(_) => "totals",
        };
        *counts.entry(kind).or_default() += 1;
    })
    .unwrap();
    assert!(counts["bar"] > 5 && counts["pnl"] > 10, "{counts:?}");

    let dir = std::env::temp_dir().join(format!("kx-polars-{}-{on:?}", std::process::id()));
    let got = example(
        "analytics_to_polars.py",
        &p,
        &[
            "--brokers",
            p.bootstrap(),
            "--parquet-dir",
            dir.to_str().unwrap(),
        ],
    );
    for (kind, n) in &counts {
        assert_eq!(got["counts"][kind], *n, "{kind}: {got}");
    }
    assert_eq!(
        got["sma_columns"],
        serde_json::json!(["sma_3", "sma_5"]),
        "{got}"
    );
    assert!(got["bars_with_sma"].as_u64().unwrap() > 0, "{got}");
    let instruments = got["instruments"].as_object().unwrap();
    assert_eq!(instruments.len(), bars.len(), "{got}");
    for (symbol, (n, volume, (_, close))) in &bars {
        let py = &instruments[symbol];
        assert_eq!(py["bars"], *n, "{symbol}: {py}");
        assert_eq!(
            py["volume"],
            volume.normalize().to_string(),
            "{symbol}: {py}"
        );
        assert_eq!(
            py["last_close"],
            close.normalize().to_string(),
            "{symbol}: {py}"
        );
    }
    for file in ["bars.parquet", "pnl.parquet", "totals.parquet"] {
        assert!(dir.join(file).metadata().unwrap().len() > 0, "{file}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A trader's script on the HTTP API, with an API key: a resting order sent twice under one
/// idempotency key (one order on `orders`), followed to NEW, cancelled, an IOC at the ask, and an
/// off-tick order refused before publication — checked against the topics.
fn python_trades_through_the_api_with_a_key(on: On) {
    let p = start(on, TopicLayout::default());
    publish(&p, &flow(3_000, 37));
    let mv = market_view(&p, "PY1", &[]);
    let (bind, key, ops_port) = (mv.bind.clone(), mv.key.clone(), mv.ops_port);
    let _jobs = Killed(vec![mv.child, match_maker(&p, &[])]);
    ready_stats(ops_port);
    let url = format!("http://{bind}");
    let got = example(
        "place_orders_api.py",
        &p,
        &["--url", &url, "--api-key", &key, "--instrument", "TCS"],
    );
    assert_eq!(got["trader"], "PY1", "{got}");
    assert_eq!(got["resting"]["status"], "NEW", "{got}");
    assert_eq!(got["resting"]["retry_same_id"], true, "{got}");
    assert_eq!(got["resting"]["retry_duplicate"], true, "{got}");
    assert_eq!(got["cancel"]["status"], 202, "{got}");
    assert_eq!(got["cancel"]["final"], "CANCELLED", "{got}");
    let ioc = got["ioc"]["status"].as_str().unwrap();
    assert!(ioc == "FILLED" || ioc == "CANCELLED", "{got}");
    assert_eq!(got["off_tick"]["status"], 400, "{got}");
    assert_eq!(got["off_tick"]["error"], "price_off_tick", "{got}");
    let instruments = kappa_exchange::config::load_instruments(None).unwrap();
    let partitioner = kappa_exchange::topics::Partitioner::new(&instruments);
    assert_eq!(
        got["partition"],
        partitioner.instrument_partition("TCS", 4).unwrap(),
        "{got}"
    );

    // On the topics: the resting order once (the retry published nothing), PY1's, cancelled; the
    // off-tick order nowhere.
    let resting = got["resting"]["id"].as_u64().unwrap();
    let ioc_id = got["ioc"]["id"].as_u64().unwrap();
    let r = reader(&p);
    let (mut new_orders, mut py1_orders) = (0, BTreeSet::new());
    read_topic(&r, &p.topic("orders"), |m| {
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if v["trader"] == "PY1" {
            py1_orders.insert(v["id"].as_u64().unwrap());
            if v["id"] == resting && v.get("action").is_none() {
                new_orders += 1;
            }
        }
    })
    .unwrap();
    assert_eq!(new_orders, 1, "the retry published a second order");
    assert_eq!(
        py1_orders,
        BTreeSet::from([resting, ioc_id]),
        "only these two orders"
    );
    let mut resting_events = Vec::new();
    read_topic(&r, &p.topic("order-events"), |m| {
        let e: OrderEventMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if e.order_id == resting {
            assert_eq!(e.trader, "PY1");
            resting_events.push(e.status);
        }
    })
    .unwrap();
    assert_eq!(
        resting_events.last().map(String::as_str),
        Some("CANCELLED"),
        "{resting_events:?}"
    );
    assert!(
        resting_events.iter().any(|s| s == "NEW"),
        "{resting_events:?}"
    );
}
