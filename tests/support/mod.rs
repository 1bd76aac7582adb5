//! Helpers shared by the integration tests that run jobs against the embedded broker.
#![allow(dead_code)]

use kappa_exchange::config;
use kappa_exchange::embedded::{EmbeddedKafka, TopicLayout};
use kappa_exchange::generator::{self, FlowConfig};
use kappa_exchange::kafka::KafkaArgs;
use kappa_exchange::schema::TradeMessage;
use kappa_exchange::shutdown::Shutdown;
use rdkafka::consumer::BaseConsumer;
use std::process::{Child, Command, Stdio};
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

pub struct Pipeline {
    pub broker: EmbeddedKafka,
    pub kafka: KafkaArgs,
}

pub fn start(layout: TopicLayout) -> Pipeline {
    let broker = EmbeddedKafka::start(&layout.topics("")).unwrap();
    let kafka = KafkaArgs::new(broker.bootstrap());
    Pipeline { broker, kafka }
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

pub fn publish(p: &Pipeline, items: &[(String, Vec<u8>, i64)]) {
    let it = items
        .iter()
        .map(|(k, v, t)| (k.clone(), v.clone(), Some(*t)));
    let stats = generator::publish(
        &p.kafka,
        it,
        items.len() as u64,
        0.0,
        false,
        &Shutdown::new(),
    )
    .unwrap();
    assert_eq!(stats.published, items.len() as u64);
}

pub fn match_maker(p: &Pipeline, extra: &[&str]) -> Child {
    job(p, env!("CARGO_BIN_EXE_match-maker"), extra)
}

/// Starts a job binary against the pipeline's broker.
pub fn job(p: &Pipeline, bin: &str, extra: &[&str]) -> Child {
    Command::new(bin)
        .args(["--brokers", p.broker.bootstrap()])
        .args(extra)
        .env("RUST_LOG", "warn")
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

pub fn reader(p: &Pipeline) -> BaseConsumer {
    p.kafka.reader().create().unwrap()
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
