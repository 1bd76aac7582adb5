//! The order-generator job: publishes a realistic, seeded order flow to `orders`.
//!
//! The flow is [`kappa_engine::workload`]'s mixed profile — a random-walking mid price per
//! instrument, limit prices clustered at the touch with a heavy tail, marketable and IOC/FOK
//! orders, cancels and amends of the generator's own live orders — turned into decimal JSON
//! orders (the extended seed format). Event times follow a Poisson process (exponential gaps) at
//! the nominal rate from a fixed start, so the same seed gives the same orders byte for byte,
//! whatever the wall clock. `--rate` throttles publishing in wall-clock time (0 = as fast as
//! possible). `--from-file` publishes a CSV or JSON-lines file instead.

use crate::runtime::kafka::{create_reader, KafkaArgs};
use crate::runtime::shutdown::Shutdown;
use crate::topics::Partitioner;
use crate::wire::{parse_order, OrderMessage};
use anyhow::{anyhow, Context as _};
use kappa_engine::workload::{Generator, Profile, WorkloadConfig};
use kappa_engine::{AmendOrder, CancelOrder, Command, Instruments, NewOrder, Request};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::Path;
use std::time::{Duration, Instant};

/// 2023-03-13 09:15:00 UTC: where generated event time starts by default.
pub const DEFAULT_START_MS: i64 = 1_678_698_900_000;

/// The first order id of a generator run started at `now_ms` (ms since the Unix epoch):
/// `now_ms × 1000`. A run's ids are `first, first + 1, …`, so a later run starts above every id
/// of an earlier one as long as runs publish fewer than 1 000 orders per millisecond (1 M/s;
/// the generator's ceiling is about 250 k/s here); ids stay below 2^52 — the range the API
/// allocates from starts there — until the year 2112. Runs started concurrently must be given
/// their own `--first-order-id` ranges.
pub fn run_first_order_id(now_ms: i64) -> u64 {
    (now_ms.max(1) as u64).saturating_mul(1000)
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    pub count: usize,
    pub instruments: usize,
    pub traders: usize,
    pub seed: u64,
    /// Nominal arrival rate for event times (orders per second of event time).
    pub event_rate: f64,
    pub start_ms: i64,
    pub first_order_id: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            count: 100_000,
            instruments: 5,
            traders: 200,
            seed: 42,
            event_rate: 10_000.0,
            start_ms: DEFAULT_START_MS,
            first_order_id: 1_000_001,
        }
    }
}

/// Converts an integer request back to its decimal command.
pub fn to_command(r: &Request, instruments: &Instruments) -> Command {
    match *r {
        Request::New(n) => Command::New(NewOrder {
            order_id: n.order_id,
            trader: n.trader,
            instrument: instruments.symbol(n.instrument),
            side: n.side,
            order_type: n.order_type,
            time_in_force: n.time_in_force,
            post_only: n.post_only,
            price: n.price.map(|p| instruments.ticks_to_price(n.instrument, p)),
            quantity: instruments.lots_to_qty(n.instrument, n.quantity),
        }),
        Request::Cancel(c) => Command::Cancel(CancelOrder {
            order_id: c.order_id,
            trader: c.trader,
            instrument: instruments.symbol(c.instrument),
        }),
        Request::Amend(a) => Command::Amend(AmendOrder {
            order_id: a.order_id,
            trader: a.trader,
            instrument: instruments.symbol(a.instrument),
            price: a.price.map(|p| instruments.ticks_to_price(a.instrument, p)),
            quantity: a.quantity.map(|q| instruments.lots_to_qty(a.instrument, q)),
            total: a.total,
        }),
    }
}

/// The generated flow as `(instrument key, JSON payload, event time)`, deterministic per seed:
/// `config.count` commands.
pub fn flow<'a>(
    config: &'a FlowConfig,
    instruments: &'a Instruments,
) -> impl Iterator<Item = (String, Vec<u8>, i64)> + 'a {
    shaped_flow(config, instruments, config.count)
}

/// Like [`flow`], but without end (`config.count` only shapes the flow: its opening phase and
/// how many orders rest) — for live demos that publish at a rate until stopped.
pub fn endless_flow<'a>(
    config: &'a FlowConfig,
    instruments: &'a Instruments,
) -> impl Iterator<Item = (String, Vec<u8>, i64)> + 'a {
    shaped_flow(config, instruments, usize::MAX)
}

fn shaped_flow<'a>(
    config: &'a FlowConfig,
    instruments: &'a Instruments,
    limit: usize,
) -> impl Iterator<Item = (String, Vec<u8>, i64)> + 'a {
    let wc = WorkloadConfig {
        messages: config.count,
        instruments: config.instruments,
        traders: config.traders,
        seed: config.seed,
        profile: Profile::Mixed,
        first_order_id: config.first_order_id,
    };
    let mut clock = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_c10c);
    let mut t = config.start_ms as f64;
    let mean_gap_ms = 1000.0 / config.event_rate.max(1e-9);
    Generator::new(&wc, instruments).take(limit).map(move |r| {
        let u: f64 = clock.random_range(f64::EPSILON..1.0);
        t += -u.ln() * mean_gap_ms;
        let ts = t as i64;
        let cmd = to_command(&r, instruments);
        let msg = OrderMessage::from_command(&cmd, ts);
        (
            cmd.symbol().to_string(),
            serde_json::to_vec(&msg).expect("order serializes"),
            ts,
        )
    })
}

/// Reads orders from a file: JSON lines (`.jsonl`/`.json`, one order per line, published as
/// written) or CSV (`.csv`, header `id,instrument,trxn_type,quantity,price,order_timestamp` plus
/// optional `trader,order_type,time_in_force,action`). Returns `(key, payload)` pairs; lines that
/// are not valid orders are still published (the match maker rejects them with a reason).
pub fn read_file(path: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key_of = |payload: &[u8]| {
        parse_order(payload)
            .map(|p| p.command.symbol().to_string())
            .unwrap_or_default()
    };
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_csv {
        return Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (key_of(l.as_bytes()), l.trim().as_bytes().to_vec()))
            .collect());
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| anyhow!("{} is empty", path.display()))?
        .split(',')
        .map(|h| h.trim().to_string())
        .collect();
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let cells = split_csv(line);
        if cells.len() != header.len() {
            return Err(anyhow!(
                "{}:{}: {} fields, header has {}",
                path.display(),
                n + 2,
                cells.len(),
                header.len()
            ));
        }
        let mut obj = serde_json::Map::new();
        for (h, c) in header.iter().zip(cells) {
            if c.is_empty() {
                continue;
            }
            let value = match h.as_str() {
                "id" => serde_json::Value::Number(
                    c.parse::<u64>()
                        .map_err(|e| anyhow!("{}:{}: id {c:?}: {e}", path.display(), n + 2))?
                        .into(),
                ),
                "quantity" | "price" => serde_json::Value::String(c),
                "post_only" => serde_json::Value::Bool(c.eq_ignore_ascii_case("true")),
                _ => serde_json::Value::String(c),
            };
            obj.insert(h.clone(), value);
        }
        let payload = serde_json::to_vec(&obj)?;
        out.push((key_of(&payload), payload));
    }
    Ok(out)
}

/// Splits one CSV line (double-quoted fields may contain commas; `""` is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().expect("cell").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().expect("cell").push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// What a publishing run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Orders the broker acknowledged (delivery reports), and their payload bytes.
    pub published: u64,
    pub bytes: u64,
}

/// Counts delivery reports: an order is published only once the broker acknowledged it.
#[derive(Default)]
struct Deliveries {
    delivered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Relaxed);
            }
            Err((e, m)) => {
                self.failed.fetch_add(1, Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none() {
                    use rdkafka::message::Message as _;
                    *first = Some(format!(
                        "{e} ({} bytes to {}/{})",
                        m.payload_len(),
                        m.topic(),
                        m.partition()
                    ));
                }
            }
        }
    }
}

/// Publishes `(key, payload, timestamp)` items to `topic` as fast as possible (benchmarks, tools).
pub fn publish_to(
    kafka: &KafkaArgs,
    partitioner: &Partitioner,
    topic: &str,
    items: impl Iterator<Item = (String, Vec<u8>, Option<i64>)>,
    total: u64,
    shutdown: &Shutdown,
) -> anyhow::Result<PublishStats> {
    let to = Destination { topic, partitioner };
    publish_inner(kafka, to, items, total, 0.0, false, shutdown)
}

/// Publishes `(key, payload, timestamp)` items to the orders topic at `rate` messages/s
/// (0 = unthrottled), with a progress bar when `progress` is set. Returns once every order is
/// acknowledged by the broker; an error, with the count and the first cause, when any was not.
pub fn publish(
    kafka: &KafkaArgs,
    partitioner: &Partitioner,
    items: impl Iterator<Item = (String, Vec<u8>, Option<i64>)>,
    total: u64,
    rate: f64,
    progress: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<PublishStats> {
    let orders = kafka.topics().orders;
    let to = Destination {
        topic: &orders,
        partitioner,
    };
    publish_inner(kafka, to, items, total, rate, progress, shutdown)
}

/// Where published records go: a topic, and the partitioner that places them in it.
struct Destination<'a> {
    topic: &'a str,
    partitioner: &'a Partitioner,
}

fn publish_inner(
    kafka: &KafkaArgs,
    Destination { topic, partitioner }: Destination<'_>,
    items: impl Iterator<Item = (String, Vec<u8>, Option<i64>)>,
    total: u64,
    rate: f64,
    progress: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<PublishStats> {
    let producer: BaseProducer<Deliveries> = kafka
        .producer()
        .create_with_context(Deliveries::default())
        .context("creating producer")?;
    let reader = create_reader(&kafka.reader()).context("creating metadata client")?;
    let partitions = crate::runtime::kafka::partition_count(&reader, topic)?;
    let bar = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} orders {pos}/{len} [{bar:30}] {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut stats = PublishStats::default();
    let mut sent = 0u64;
    for (key, payload, ts) in items {
        if shutdown.is_triggered() {
            break;
        }
        if rate > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let partition = partitioner.partition(key.as_bytes(), partitions);
        let mut record = BaseRecord::to(topic).partition(partition).payload(&payload);
        if !key.is_empty() {
            record = record.key(&key);
        }
        if let Some(ts) = ts {
            record = record.timestamp(ts);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => return Err(e).context("producing an order"),
            }
        }
        sent += 1;
        stats.bytes += payload.len() as u64;
        if sent.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
            bar.set_position(sent);
        }
    }
    crate::runtime::kafka::flush(&producer, Duration::from_secs(60)).context("flushing orders")?;
    bar.set_position(sent);
    bar.finish_and_clear();
    let deliveries = producer.context();
    stats.published = deliveries
        .delivered
        .load(std::sync::atomic::Ordering::Relaxed);
    let failed = deliveries.failed.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        let first = deliveries
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        return Err(anyhow!(
            "{failed} of {sent} orders were not delivered ({} were); the first failure: {first}",
            stats.published
        ));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_is_deterministic_parseable_and_time_ordered() {
        let inst = crate::config::load_instruments(None).unwrap();
        let cfg = FlowConfig {
            count: 5_000,
            ..Default::default()
        };
        let a: Vec<_> = flow(&cfg, &inst).collect();
        let b: Vec<_> = flow(&cfg, &inst).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5_000);
        let mut last = 0;
        for (key, payload, ts) in &a {
            let p = parse_order(payload).unwrap();
            assert_eq!(&p.command.symbol().to_string(), key);
            assert_eq!(p.event_time_ms, Some(*ts));
            assert!(*ts >= last);
            last = *ts;
        }
        // ~10k orders/s of event time: 5k orders span about half a second.
        let span = a.last().unwrap().2 - a[0].2;
        assert!((300..800).contains(&span), "span {span} ms");
    }

    #[test]
    fn csv_and_jsonl_files_become_orders() {
        let dir = std::env::temp_dir().join(format!("kx-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("o.csv");
        std::fs::write(&csv, "id,instrument,trxn_type,quantity,price,order_timestamp\n1000001,TCS,BUY,5.0,15.0,\"2023/03/12, 23:48:37\"\n").unwrap();
        let rows = read_file(&csv).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, "TCS");
        let p = parse_order(&rows[0].1).unwrap();
        assert_eq!(p.event_time_ms, Some(1_678_664_917_000));
        let jsonl = dir.join("o.jsonl");
        std::fs::write(&jsonl, "{\"id\":1,\"instrument\":\"INFY\",\"trxn_type\":\"SELL\",\"quantity\":1,\"price\":1500}\n\nnot json\n").unwrap();
        let rows = read_file(&jsonl).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "INFY");
        assert_eq!(rows[1].0, "", "invalid lines are still published, unkeyed");
        std::fs::write(&csv, "id,instrument\n1,TCS,extra\n").unwrap();
        assert!(read_file(&csv).is_err());
    }

    #[test]
    fn shipped_sample_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        for f in ["sample_orders.csv", "sample_orders.jsonl"] {
            let rows = read_file(&root.join(f)).unwrap();
            assert!(rows.len() >= 5, "{f}");
            assert!(rows.iter().all(|(_, p)| parse_order(p).is_ok()), "{f}");
        }
    }
}
