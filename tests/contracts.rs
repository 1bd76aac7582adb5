//! The machine-readable contracts in `schemas/` (OpenAPI description, topic JSON Schemas): the
//! committed files are what the code generates, and every message a real run writes to every
//! topic — on the embedded broker and on Apache Kafka — validates against its topic's schema.

mod support;

use kappa_exchange::runtime::kafka::read_topic;
use kappa_exchange::topics::TopicLayout;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

on_both_brokers!(every_message_of_a_real_run_matches_its_topic_schema);

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn committed_schemas_are_what_the_code_generates() {
    let stale = kappa_exchange::schemas::stale(&schemas_dir());
    assert!(
        stale.is_empty(),
        "{stale:?} differ from the code: run `cargo run -- schemas write` and commit"
    );
    // And nothing else lies in schemas/ pretending to be generated.
    let generated: BTreeSet<PathBuf> = kappa_exchange::schemas::files()
        .into_iter()
        .map(|(p, _)| schemas_dir().join(p))
        .collect();
    for dir in [schemas_dir(), schemas_dir().join("topics")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "json") {
                assert!(generated.contains(&path), "{path:?} is not generated");
            }
        }
    }
}

fn validator(topic: &str) -> jsonschema::Validator {
    let path = schemas_dir().join("topics").join(format!("{topic}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The topic schemas are not vacuous: plausible mistakes of a writer fail them.
#[test]
fn topic_schemas_refuse_what_no_writer_may_write() {
    let trade = serde_json::json!({"trade_id": 1, "instrument": "TCS", "price": 15.05,
        "quantity": 5, "buyer": "A", "seller": "B", "buy_order_id": 1, "sell_order_id": 2,
        "aggressor": "BUY", "ts_ms": 1});
    let v = validator("trades");
    assert!(v.is_valid(&trade));
    let mutate = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut t = trade.as_object().unwrap().clone();
        f(&mut t);
        Value::Object(t)
    };
    for bad in [
        mutate(&|t| {
            t.insert("price".into(), "15.05".into());
        }),
        mutate(&|t| {
            t.insert("aggressor".into(), "buy".into());
        }),
        mutate(&|t| {
            t.remove("seller");
        }),
        mutate(&|t| {
            t.insert("prise".into(), 1.into());
        }),
        mutate(&|t| {
            t.insert("trade_id".into(), (-1).into());
        }),
    ] {
        assert!(!v.is_valid(&bad), "accepted {bad}");
    }
    let analytics = validator("analytics");
    let bar = serde_json::json!({"kind": "bar", "instrument": "TCS", "start_ms": 0, "end_ms": 1000,
        "open": 1, "high": 2, "low": 1, "close": 2, "volume": 3, "vwap": 1.5, "trades": 2});
    assert!(analytics.is_valid(&bar));
    let mut sma = bar.clone();
    sma["kind"] = "sma".into();
    assert!(!analytics.is_valid(&sma), "a bar's fields under kind sma");
    let seed = serde_json::json!({"id":1000001,"instrument":"TCS","trxn_type":"BUY","quantity":5.0,
        "price":15.0,"order_timestamp":"2023/03/12, 23:48:37"});
    assert!(validator("orders").is_valid(&seed), "the seed order");
}

/// Orders that make every kind of output: the seed order as is, a market order, IOC/FOK, a
/// post-only, a cancel and an amend, one the engine rejects (off tick) and one that is no JSON.
fn extra_orders() -> Vec<(&'static str, Vec<u8>)> {
    [
        r#"{"id":1000001,"instrument":"TCS","trxn_type":"BUY","quantity":5.0,"price":15.0,"order_timestamp":"2023/03/12, 23:48:37"}"#,
        r#"{"id":1000002,"instrument":"TCS","trxn_type":"SELL","quantity":2,"order_type":"MARKET","trader":"X1"}"#,
        r#"{"id":1000003,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":1,"time_in_force":"IOC","trader":"X1"}"#,
        r#"{"id":1000004,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":1,"time_in_force":"FOK","trader":"X1"}"#,
        r#"{"id":1000005,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":1,"post_only":true,"trader":"X2"}"#,
        r#"{"action":"AMEND","id":1000005,"instrument":"TCS","trader":"X2","price":1.05,"quantity":2}"#,
        r#"{"action":"CANCEL","id":1000005,"instrument":"TCS","trader":"X2"}"#,
        r#"{"id":1000006,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":1.00001,"trader":"X3"}"#,
        r#"{"id":1000007,"instrument":"TCS""#,
    ]
    .into_iter()
    .map(|s| ("TCS", s.as_bytes().to_vec()))
    .collect()
}

fn every_message_of_a_real_run_matches_its_topic_schema(on: On) {
    let p = start(on, TopicLayout::default());
    let partitioner = kappa_exchange::topics::Partitioner::new(
        &kappa_exchange::config::load_instruments(None).unwrap(),
    );
    let producer: BaseProducer = p.kafka.producer().create().unwrap();
    let orders = p.topic("orders");
    for (key, payload) in extra_orders() {
        let record = BaseRecord::to(&orders)
            .partition(partitioner.instrument_partition(key, 4).unwrap())
            .key(key)
            .payload(&payload[..]);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    publish_at(&p, &flow(4_000, 23), 4_000.0);
    let mut mm = match_maker(&p, &["--idle-exit-ms", "1500"]);
    wait(&mut mm, Duration::from_secs(120));
    wait_stable(&p, "trades");
    let args = ["--until-end", "--window", "100ms", "--sma", "3,5"];
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &args);
    let mut pnl = job(&p, env!("CARGO_BIN_EXE_profit-calculator"), &args);
    wait(&mut sma, Duration::from_secs(120));
    wait(&mut pnl, Duration::from_secs(120));

    let r = reader(&p);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut variants: BTreeSet<String> = BTreeSet::new();
    let mut failures = Vec::new();
    // Every topic that has a schema (the generator's own list: a new topic is covered here).
    let topics: Vec<&str> = kappa_exchange::wire::schema::topic_schemas()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    for &topic in &topics {
        let v = validator(topic);
        read_topic(&r, &p.topic(topic), |m| {
            let payload = m.payload().unwrap_or_default();
            let Ok(value) = serde_json::from_slice::<Value>(payload) else {
                // Only the deliberately broken order is no JSON.
                if topic != "orders" {
                    failures.push(format!("{topic}: not JSON"));
                }
                return;
            };
            *seen.entry(topic.to_string()).or_default() += 1;
            for field in [
                "status",
                "kind",
                "reason",
                "order_type",
                "time_in_force",
                "action",
            ] {
                if let Some(Value::String(s)) = value.get(field) {
                    variants.insert(format!("{topic}.{field}={s}"));
                }
            }
            if let Err(e) = v.validate(&value) {
                if failures.len() < 20 {
                    failures.push(format!("{topic}: {e} in {value}"));
                }
            }
        })
        .unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(topics.len(), 6, "{topics:?}");
    for topic in &topics {
        assert!(
            seen.get(*topic).copied().unwrap_or(0) > 0,
            "no {topic}: {seen:?}"
        );
    }
    // The run exercised what the schemas describe, not only the common case.
    for v in [
        "analytics.kind=bar",
        "analytics.kind=sma",
        "analytics.kind=pnl",
        "analytics.kind=totals",
        "order-events.status=NEW",
        "order-events.status=PARTIALLY_FILLED",
        "order-events.status=FILLED",
        "order-events.status=CANCELLED",
        "order-events.status=REJECTED",
        "order-events.status=AMENDED",
        "order-events.order_type=MARKET",
        "order-events.time_in_force=IOC",
        "order-events.time_in_force=FOK",
        "orders.action=CANCEL",
        "orders.action=AMEND",
        "rejects.reason=malformed_json",
    ] {
        assert!(variants.contains(v), "{v} never seen: {variants:?}");
    }
}

/// Schemathesis (a property-based API tester nobody on the project wrote) against a live
/// market-view serving a running pipeline: every operation of `schemas/openapi.json`, with the
/// checks of `tests/api/schemathesis.toml` — answers conform to the description (status codes,
/// content types, bodies, headers, SSE events), invalid requests are refused, no 5xx, credentials
/// are not ignored. Only on the embedded broker: the HTTP side is the same on both.
#[test]
fn the_live_api_conforms_to_its_openapi_description() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = root.join(".venv-clients/bin/schemathesis");
    assert!(
        st.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs the pinned schemathesis)",
        st.display()
    );
    let p = start(On::Mock, TopicLayout::default());
    publish(&p, &flow(3_000, 29));
    // Schemathesis's working directory (it keeps a cache there).
    let dir = std::env::temp_dir().join(format!("kx-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let live = ["--window", "100ms", "--sma", "3,5"];
    let mv = market_view(
        &p,
        "T0001",
        // The tester's own pace is the load; rate limits are tested elsewhere.
        &[
            "--ip-rate",
            "100000",
            "--ip-burst",
            "100000",
            "--trader-rate",
            "100000",
            "--trader-burst",
            "100000",
        ],
    );
    let (bind, key, ops_port) = (mv.bind.clone(), mv.key.clone(), mv.ops_port);
    let _jobs = Killed(vec![
        mv.child,
        match_maker(&p, &[]),
        job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &live),
        job(&p, env!("CARGO_BIN_EXE_profit-calculator"), &live),
    ]);
    ready_stats(ops_port);
    // The docs page works offline: Swagger UI's files come from market-view itself, pointed at
    // the served description, with the online validator off.
    let get = |path: &str| {
        ureq::get(&format!("http://{bind}{path}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    let page = get("/docs/");
    assert!(page.contains("swagger-ui-bundle.js"), "{page}");
    let init = get("/docs/swagger-initializer.js");
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    for (name, text) in [("index", &page), ("initializer", &init)] {
        assert!(
            !text.contains("https://") && !text.contains("http://"),
            "{name} loads something from elsewhere: {text}"
        );
    }
    assert!(get("/docs/swagger-ui-bundle.js").len() > 100_000);
    let served: Value = serde_json::from_str(&get("/openapi.json")).unwrap();
    assert_eq!(served["openapi"], "3.1.0");
    // Bounded: coreutils' timeout ends a run that hangs (its failure shows the output so far).
    let out = std::process::Command::new("timeout")
        .arg("300")
        .arg(&st)
        .arg("--config-file")
        .arg(root.join("tests/api/schemathesis.toml"))
        .env(
            "SCHEMATHESIS_HOOKS",
            root.join("tests/api/schemathesis_hooks.py"),
        )
        .args(["--no-color", "run", &format!("http://{bind}/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--max-examples", "25"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(schemas_dir().join("openapi.json")).unwrap())
            .unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert!(operations >= 15, "{operations} operations described");
    assert!(
        text.contains(&format!("Tested: {operations}\n")),
        "not all {operations} operations were tested:\n{text}"
    );
}
