//! Helpers shared by the integration tests that run jobs against a broker: the embedded mock
//! (fast, in this process) or a real Apache Kafka (what production runs).
//!
//! Every end-to-end test runs on both: a test body is a `fn(On)`, listed in
//! [`on_both_brokers!`], which makes a `mock::NAME` and a `kafka::NAME` test of it. The real broker
//! is the one at `KAPPA_TEST_KAFKA` (scripts/test.sh starts one for the whole run), or else one
//! this test process starts with `scripts/kafka.sh` (stopped when the process exits). Tests share
//! it: each gets its own topic prefix, which namespaces its consumer groups and transactional ids
//! too, so they run in parallel without seeing each other.
#![allow(dead_code)]

use kappa_exchange::config;
use kappa_exchange::generator::{self, FlowConfig};
use kappa_exchange::runtime::broker::Broker;
use kappa_exchange::runtime::kafka::{create_reader, KafkaArgs, Reader};
use kappa_exchange::runtime::shutdown::Shutdown;
use kappa_exchange::topics::{Partitioner, TopicLayout};
use kappa_exchange::wire::TradeMessage;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// (buy order, sell order, price, quantity, aggressor) — a trade minus its partition-specific id.
pub type TradeKey = (u64, u64, String, String, String);

pub fn key(t: &TradeMessage) -> TradeKey {
    (
        t.buy_order_id,
        t.sell_order_id,
        t.price.to_string(),
        t.quantity.to_string(),
        t.aggressor.clone(),
    )
}

/// Asserts two trade streams (per instrument) are equal, reporting only where they first differ.
pub fn assert_same_trades(
    actual: &std::collections::BTreeMap<String, Vec<TradeKey>>,
    expected: &std::collections::BTreeMap<String, Vec<TradeKey>>,
) {
    let mut report = Vec::new();
    for sym in actual.keys().chain(expected.keys()) {
        let (a, e) = (
            actual.get(sym).map_or(&[][..], Vec::as_slice),
            expected.get(sym).map_or(&[][..], Vec::as_slice),
        );
        if a != e {
            let i = a
                .iter()
                .zip(e)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(e.len()));
            report.push(format!(
                "{sym}: {} trades, expected {}; first difference at {i}: got {:?}, expected {:?}",
                a.len(),
                e.len(),
                &a[i.min(a.len())..(i + 3).min(a.len())],
                &e[i.min(e.len())..(i + 3).min(e.len())],
            ));
        }
    }
    report.dedup();
    assert!(report.is_empty(), "trades differ:\n{}", report.join("\n"));
}

/// Which broker a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    /// librdkafka's mock cluster, started by the test.
    Mock,
    /// Apache Kafka (KRaft), shared by the tests of a run.
    Kafka,
}

/// Makes `mock::NAME` and `kafka::NAME` tests of each listed `fn NAME(on: On)`.
#[allow(unused_macros)]
macro_rules! on_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod mock {
            $( #[test] fn $name() { super::$name(super::support::On::Mock) } )*
        }
        mod kafka {
            $( #[test] fn $name() { super::$name(super::support::On::Kafka) } )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_brokers;

/// A pipeline's broker and the client settings of its namespace.
pub struct Pipeline {
    pub broker: Broker,
    /// Settings for this test's topics (its `topic_prefix` is the test's namespace).
    pub kafka: KafkaArgs,
    pub on: On,
}

impl Pipeline {
    /// The name of topic `base` (`trades`, `replay.trades`…) in this test's namespace.
    pub fn topic(&self, base: &str) -> String {
        format!("{}{base}", self.kafka.topic_prefix)
    }

    /// The namespace prefix ("" on the mock).
    pub fn prefix(&self) -> &str {
        &self.kafka.topic_prefix
    }

    pub fn bootstrap(&self) -> &str {
        self.broker.bootstrap()
    }

    /// Creates the standard topics under `extra` (e.g. `replay.`) in this namespace.
    pub fn create_topics(&self, extra: &str, layout: &TopicLayout) {
        self.broker
            .create_topics(&layout.plan(&self.topic(extra)))
            .unwrap();
    }
}

/// A fresh namespace on the shared real broker.
fn unique_prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "t{}-{}-{}.",
        secs % 1_000_000,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The real broker of this test run: `KAPPA_TEST_KAFKA`, or one started (once per test
/// process) with scripts/kafka.sh on a free port, stopped and deleted when this process exits.
pub fn real_kafka() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        if let Ok(addr) = std::env::var("KAPPA_TEST_KAFKA") {
            if !addr.trim().is_empty() {
                return addr;
            }
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("kx-test-kafka-{}-{port}", std::process::id()));
            let out = Command::new("bash")
                .arg(script)
                .args([
                    "start",
                    "--port",
                    &port.to_string(),
                    "--heap",
                    "768m",
                    "--ephemeral",
                ])
                .arg("--dir")
                .arg(&dir)
                .args(["--watch-pid", &std::process::id().to_string()])
                .output()
                .expect("running scripts/kafka.sh");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if !last.contains("is taken") {
                break;
            }
        }
        panic!(
            "could not start a real Kafka broker for the tests (scripts/kafka.sh start):\n{last}"
        );
    })
}

/// A pipeline on `on` with the standard topics of `layout`.
pub fn start(on: On, layout: TopicLayout) -> Pipeline {
    let (broker, prefix) = match on {
        On::Mock => (Broker::embedded().unwrap(), String::new()),
        On::Kafka => (
            Broker::external(&KafkaArgs::new(real_kafka())),
            unique_prefix(),
        ),
    };
    broker.create_topics(&layout.plan(&prefix)).unwrap();
    let kafka = broker.kafka(&prefix);
    Pipeline { broker, kafka, on }
}

pub fn flow(count: usize, seed: u64) -> Vec<(String, Vec<u8>, i64)> {
    let instruments = config::load_instruments(None).unwrap();
    let cfg = FlowConfig {
        count,
        seed,
        ..Default::default()
    };
    generator::flow(&cfg, &instruments).collect()
}

/// Publishes `(key, payload, record timestamp)` orders as fast as possible.
pub fn publish(p: &Pipeline, items: &[(String, Vec<u8>, i64)]) {
    publish_at(p, items, 0.0);
}

/// Publishes orders at `rate` per second of wall-clock time (0: as fast as possible).
pub fn publish_at(p: &Pipeline, items: &[(String, Vec<u8>, i64)], rate: f64) {
    let it = items
        .iter()
        .map(|(k, v, t)| (k.clone(), v.clone(), Some(*t)));
    let stats = generator::publish(
        &p.kafka,
        &Partitioner::new(&config::load_instruments(None).unwrap()),
        it,
        items.len() as u64,
        rate,
        false,
        &Shutdown::new(),
    )
    .unwrap();
    assert_eq!(stats.published, items.len() as u64);
}

pub fn match_maker(p: &Pipeline, extra: &[&str]) -> Child {
    job(p, env!("CARGO_BIN_EXE_match-maker"), extra)
}

/// Starts a job binary against the pipeline's broker, in the pipeline's namespace.
pub fn job(p: &Pipeline, bin: &str, extra: &[&str]) -> Child {
    Command::new(bin)
        .args(["--brokers", p.broker.bootstrap()])
        .env("KAFKA_TOPIC_PREFIX", p.prefix())
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("KAPPA_TEST_JOB_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"))
}

pub fn wait(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "job exited with {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("job did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn reader(p: &Pipeline) -> Reader {
    create_reader(&p.kafka.reader()).unwrap()
}

/// Waits until every partition of `topic` is stable: its last stable offset (what a
/// read_committed reader may read up to) has reached its high watermark. A transactional producer
/// that has just committed and exited can leave the commit markers still being written for a
/// moment, and a `--until-end` job started then would stop at the older stable offset.
#[allow(dead_code)]
pub fn wait_stable(p: &Pipeline, topic: &str) {
    let committed = reader(p);
    let mut uncommitted = p.kafka.reader();
    uncommitted.set("isolation.level", "read_uncommitted");
    let uncommitted = create_reader(&uncommitted).unwrap();
    use kappa_exchange::runtime::kafka::{partition_count, watermarks};
    let topic = p.topic(topic);
    let n = partition_count(&committed, &topic).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for q in 0..n {
        loop {
            let stable = watermarks(&committed, &topic, q).unwrap().1;
            let high = watermarks(&uncommitted, &topic, q).unwrap().1;
            if stable >= high {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{topic}/{q} never became stable ({stable} < {high})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs a future (an Admin API call) to completion on a small runtime of its own.
#[allow(dead_code)]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// An Admin API client for `k`'s cluster.
#[allow(dead_code)]
pub fn admin(k: &KafkaArgs) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    k.admin().create().unwrap()
}

/// Kills (and reaps) its child processes when dropped, so a failing test leaves nothing behind.
pub struct Killed(pub Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP port that was free a moment ago (for a server started by a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// market-view's `/stats` from its ops port, once it reports ready (fails after 60 s).
pub fn ready_stats(ops_port: u16) -> serde_json::Value {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = agent
            .get(&format!("http://127.0.0.1:{ops_port}/stats"))
            .call()
        {
            let v: serde_json::Value = r.into_json().unwrap();
            if v["ready"] == true {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "market-view never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A market-view process on the pipeline with one trader's API key (in a key file of its own).
#[allow(dead_code)]
pub struct MarketView {
    pub child: Child,
    /// Its public address (`127.0.0.1:PORT`) and ops port.
    pub bind: String,
    pub ops_port: u16,
    /// The trader's API key.
    pub key: String,
}

/// Starts market-view with a key for `trader` and `extra` flags (not yet ready: see
/// [`ready_stats`]).
#[allow(dead_code)]
pub fn market_view(p: &Pipeline, trader: &str, extra: &[&str]) -> MarketView {
    let (port, ops_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("kx-market-view-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("keys");
    let _ = std::fs::remove_file(&key_file);
    let (key, _) = kappa_exchange::serving::auth::add_key(Some(&key_file), trader, None).unwrap();
    let (bind, ops) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{ops_port}"));
    let mut args = vec!["--bind", &bind, "--ops-bind", &ops, "--api-keys"];
    args.push(key_file.to_str().unwrap());
    args.extend_from_slice(extra);
    let child = job(p, env!("CARGO_BIN_EXE_market-view"), &args);
    MarketView {
        child,
        bind,
        ops_port,
        key,
    }
}

/// The Python of the pinned client venv (`.venv-clients`: confluent-kafka, Polars, schemathesis)
/// that `scripts/setup.sh` installs.
pub fn clients_python() -> std::path::PathBuf {
    let venv =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-clients/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs the pinned Python clients)",
        venv.display()
    );
    venv
}
