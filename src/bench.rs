//! Benchmarks of the pipeline and the analytics jobs, on the embedded broker or a real cluster
//! (`--brokers`).
//!
//! Pipeline: the order generator publishes as fast as it can while the match maker consumes,
//! matches and publishes (or, `--preload`, the match maker alone on a backlog); the figure is
//! orders/s from the first publish until the match maker has consumed every order, with verified
//! counts. Each run also measures, against the same broker and with the same client settings, a
//! **ceiling**: raw librdkafka pass-through of the same messages (consume, produce unparsed to
//! another topic), and prints the ratio.

use crate::generator::{self, FlowConfig};
use crate::matchmaker;
use crate::report::summarize_topics;
use crate::runtime::broker::{Broker, BrokerArgs};
use crate::runtime::kafka::{create_reader, KafkaArgs};
use crate::runtime::metrics::Counters;
use crate::runtime::shutdown::Shutdown;
use crate::topics::{Partitioner, PlannedTopic, Topic, TopicLayout};
use anyhow::{anyhow, Context as _};
use kappa_engine::Instruments;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};

/// A benchmark's topics on its broker: created under a fresh prefix on a real cluster, and
/// deleted when dropped (benchmarks write hundreds of MB).
struct BenchTopics {
    broker: Broker,
    kafka: KafkaArgs,
    names: Vec<String>,
}

impl BenchTopics {
    fn create(args: &BrokerArgs, layout: &TopicLayout) -> anyhow::Result<Self> {
        let (broker, prefix) = args.open("bench")?;
        let kafka = broker.kafka(&prefix);
        let mut plan = layout.plan(&prefix);
        // The ceiling's output: like `trades`, with the input's partition count.
        plan.push(PlannedTopic {
            name: format!("{prefix}passthrough"),
            partitions: layout.orders.max(layout.trades),
            spec: Topic::Trades.spec(),
            retention_ms: Topic::Trades.spec().retention_ms,
            about: "pass-through ceiling".into(),
        });
        broker.create_topics(&plan)?;
        println!(
            "{} at {}{}",
            broker.describe(),
            broker.bootstrap(),
            if prefix.is_empty() {
                String::new()
            } else {
                format!(", topics {prefix}*")
            }
        );
        Ok(BenchTopics {
            names: plan.into_iter().map(|t| t.name).collect(),
            broker,
            kafka,
        })
    }

    fn passthrough(&self) -> String {
        format!("{}passthrough", self.kafka.topic_prefix)
    }
}

impl Drop for BenchTopics {
    fn drop(&mut self) {
        if let Broker::External(k) = &self.broker {
            if let Err(e) = crate::runtime::broker::delete_topics(k, &self.names) {
                eprintln!("could not delete the benchmark topics: {e:#}");
            }
        }
    }
}

/// The raw librdkafka ceiling on this broker: consumes the `n` messages of `from` in a fresh
/// consumer group and produces each one, unparsed, to the same partition of `to`, with the
/// pipeline's own consumer and producer settings, until every one is delivered. Returns
/// messages/s from the first message consumed to the last delivery. With `to` = `None` it only
/// consumes: the ceiling of a job that reads much and writes little (the analytics).
pub fn passthrough(kafka: &KafkaArgs, from: &str, to: Option<&str>, n: u64) -> anyhow::Result<f64> {
    let group = format!("passthrough-{}", chrono::Utc::now().timestamp_micros());
    let consumer: BaseConsumer = kafka.consumer(&group).create().context("consumer")?;
    let producer: BaseProducer = kafka.producer().create().context("producer")?;
    consumer.subscribe(&[from])?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut start: Option<Instant> = None;
    let mut count = 0u64;
    while count < n {
        if Instant::now() > deadline {
            return Err(anyhow!(
                "pass-through read {count} of {n} messages of {from} in 600 s"
            ));
        }
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => return Err(e).context("pass-through consumer"),
            Some(Ok(m)) => m,
        };
        start.get_or_insert_with(Instant::now);
        let Some(to) = to else {
            std::hint::black_box((m.key(), m.payload()));
            count += 1;
            continue;
        };
        let mut record = BaseRecord::to(to)
            .partition(m.partition())
            .payload(m.payload().unwrap_or(&[]));
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => return Err(e).context("pass-through producer"),
            }
        }
        count += 1;
        if count.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("pass-through flush")?;
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(n as f64 / secs.max(1e-9))
}

/// CPU seconds (user + system, every thread) this process has used so far; `None` where
/// `/proc/self/stat` does not exist (not Linux).
fn process_cpu_secs() -> Option<f64> {
    stat_cpu_secs(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU seconds used since `start` (a [`process_cpu_secs`] reading).
fn cpu_since(start: Option<f64>) -> Option<f64> {
    Some(process_cpu_secs()? - start?)
}

/// CPU seconds used so far by this process's threads named `name`.
fn thread_cpu_secs(name: &str) -> Option<f64> {
    let mut total = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if stat_comm(&stat) == Some(name) {
            *total.get_or_insert(0.0) += stat_cpu_secs(&stat)?;
        }
    }
    total
}

/// The command (thread) name of a `/proc/…/stat` line: between the first `(` and the last `)`.
fn stat_comm(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// utime + stime of a `/proc/…/stat` line (fields 14 and 15, after the name, which may hold
/// spaces), in seconds: Linux reports them in USER_HZ, 100 per second on every architecture.
fn stat_cpu_secs(stat: &str) -> Option<f64> {
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn proc_stat_lines_are_read_past_names_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
        let line = "4242 (rdk:broker (1)) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 9";
        assert_eq!(stat_comm(line), Some("rdk:broker (1)"));
        assert_eq!(stat_cpu_secs(line), Some(3.25));
        assert_eq!(stat_cpu_secs("4242 (x) S 1 2"), None);
        // A named thread spinning: its CPU shows under its name and in the process's.
        let before = process_cpu_secs().expect("Linux");
        let spinner = std::thread::Builder::new()
            .name("cpu-test-spin".into())
            .spawn(|| {
                let t = Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                thread_cpu_secs("cpu-test-spin")
            })
            .unwrap();
        assert!(spinner.join().unwrap().expect("the thread is found") >= 0.2);
        assert!(process_cpu_secs().unwrap() - before >= 0.2);
        assert_eq!(thread_cpu_secs("no-such-thread"), None);
    }
}

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub count: usize,
    pub partitions: i32,
    pub instruments: usize,
    pub seed: u64,
    pub batch_size: usize,
    /// Publish everything first, then time the match maker alone catching up on the backlog.
    pub preload: bool,
    /// The match maker without Kafka transactions.
    pub no_transactions: bool,
    /// Embedded broker, or a real cluster.
    pub broker: BrokerArgs,
}

/// Measured figures.
#[derive(Debug)]
pub struct BenchReport {
    pub orders: u64,
    pub publish_secs: f64,
    pub end_to_end_secs: f64,
    pub outputs: u64,
    pub trades_matched: u64,
    pub trades_on_topic: u64,
    /// Raw pass-through of the same orders on the same broker (messages/s).
    pub ceiling: f64,
}

/// Runs the benchmark and prints its figures.
pub fn run(cfg: &BenchConfig, instruments: &Instruments) -> anyhow::Result<BenchReport> {
    let p = cfg.partitions;
    let bench = BenchTopics::create(&cfg.broker, &TopicLayout::uniform(p))?;
    let kafka = &bench.kafka;
    let flow = FlowConfig {
        count: cfg.count,
        instruments: cfg.instruments,
        seed: cfg.seed,
        ..Default::default()
    };
    let g = Instant::now();
    let items: Vec<_> = generator::flow(&flow, instruments).collect();
    let bytes: usize = items.iter().map(|(_, v, _)| v.len()).sum();
    println!(
        "generated {} orders ({:.1} MB JSON) in {:.2}s; {} partitions",
        items.len(),
        bytes as f64 / 1e6,
        g.elapsed().as_secs_f64(),
        p
    );

    let it = items.into_iter().map(|(k, v, t)| (k, v, Some(t)));
    let mut pending = Some(it);
    let mut publish_secs = 0.0;
    let mut published = 0;
    let mut publish_cpu = None;
    if cfg.preload {
        let cpu = process_cpu_secs();
        let t = Instant::now();
        published = generator::publish(
            kafka,
            &Partitioner::new(instruments),
            pending.take().expect("items"),
            cfg.count as u64,
            0.0,
            false,
            &Shutdown::new(),
        )?
        .published;
        publish_secs = t.elapsed().as_secs_f64();
        publish_cpu = cpu_since(cpu);
    }
    let mut opts = matchmaker::Options {
        batch_size: cfg.batch_size,
        ..Default::default()
    };
    opts.runtime.no_transactions = cfg.no_transactions;
    println!(
        "match maker with {}",
        if cfg.no_transactions {
            "an idempotent producer, no transactions (--no-transactions)"
        } else {
            "Kafka transactions (the default)"
        }
    );
    let mm = matchmaker::spawn(kafka, instruments, opts)?;
    let counters = mm.counters.clone();
    let assigned = |c: &Counters| Counters::get(&c.assigned) >= p as u64;
    if !mm.wait_until(
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(1),
        assigned,
    ) {
        return Err(anyhow!("match maker did not get its partitions"));
    }

    let run_cpu = process_cpu_secs();
    let start = Instant::now();
    if let Some(it) = pending.take() {
        let partitioner = Partitioner::new(instruments);
        published = generator::publish(
            kafka,
            &partitioner,
            it,
            cfg.count as u64,
            0.0,
            false,
            &Shutdown::new(),
        )?
        .published;
        publish_secs = start.elapsed().as_secs_f64();
    }
    let stats = generator::PublishStats {
        published,
        bytes: 0,
    };
    mm.wait_until(
        start + Duration::from_secs(600),
        Duration::from_millis(1),
        |c| Counters::get(&c.consumed) >= stats.published,
    );
    let end_to_end_secs = start.elapsed().as_secs_f64();
    let run_cpu = cpu_since(run_cpu);
    let thread_cpu = thread_cpu_secs(matchmaker::THREAD_NAME);
    mm.stop()?;
    let (_, trades_on_topic) = summarize_topics(kafka, instruments)?;
    let orders = kafka.topics().orders;
    let ceiling_cpu = process_cpu_secs();
    let ceiling = passthrough(kafka, &orders, Some(&bench.passthrough()), stats.published)?;
    let ceiling_cpu = cpu_since(ceiling_cpu);
    let report = BenchReport {
        orders: Counters::get(&counters.consumed),
        publish_secs,
        end_to_end_secs,
        outputs: Counters::get(&counters.produced),
        trades_matched: Counters::get(&counters.items),
        trades_on_topic,
        ceiling,
    };
    println!(
        "generator publish   {:>10.0} orders/s ({:.2}s)",
        stats.published as f64 / publish_secs,
        publish_secs
    );
    println!(
        "{}   {:>10.0} orders/s ({} orders consumed and matched in {:.2}s; {} outputs, {:.0} outputs/s)",
        if cfg.preload { "match maker alone" } else { "end to end       " },
        report.orders as f64 / end_to_end_secs,
        report.orders,
        end_to_end_secs,
        report.outputs,
        report.outputs as f64 / end_to_end_secs
    );
    let rate = report.orders as f64 / end_to_end_secs;
    println!(
        "ceiling             {:>10.0} orders/s raw pass-through of the same {} orders (consume, produce unparsed; same broker and client settings): the pipeline runs at {:.0} % of it",
        ceiling,
        stats.published,
        100.0 * rate / ceiling
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let (Some(run), Some(ceiling_cpu)) = (run_cpu, ceiling_cpu) {
        let publish = publish_cpu.map_or(String::new(), |c| format!("publish {c:.2} core-s; "));
        let own = thread_cpu.map_or(String::new(), |t| {
            format!(
                "; the match maker's own thread {t:.2} s, busy {:.0} % of the time",
                100.0 * t / end_to_end_secs
            )
        });
        println!(
            "cpu                 {publish}{} {run:.2} core-s ({:.2} of {cores} cores busy{own}); ceiling {ceiling_cpu:.2} core-s",
            if cfg.preload { "match maker" } else { "end to end" },
            run / end_to_end_secs
        );
    }
    if let (Some(publish), Some(ceiling_cpu)) = (publish_cpu, ceiling_cpu) {
        // What publishing the orders and passing them through once cost, with no parsing,
        // matching or outputs: a bound no pipeline of this broker and client beats on these cores.
        let floor = publish + ceiling_cpu;
        println!(
            "floor               publishing + one pass-through of these orders: {floor:.2} core-s, so at most {:.0} orders/s end to end on {cores} cores with this broker and client",
            stats.published as f64 * cores as f64 / floor
        );
    }
    let ok = report.orders == stats.published && report.trades_matched == report.trades_on_topic;
    println!(
        "verified            consumed {} of {} published; trades matched {} = on topic {}: {}",
        report.orders,
        stats.published,
        report.trades_matched,
        report.trades_on_topic,
        if ok { "OK" } else { "MISMATCH" }
    );
    if !ok {
        return Err(anyhow!("benchmark counts do not add up"));
    }
    Ok(report)
}

/// Analytics benchmark settings.
#[derive(Clone, Debug)]
pub struct AnalyticsBenchConfig {
    /// Trades for the computation-only runs.
    pub trades: usize,
    /// Trades for the live runs through Kafka (on the embedded broker they must fit its
    /// retention).
    pub live_trades: usize,
    pub partitions: i32,
    /// Micro-batch size for the computation-only runs.
    pub batch: usize,
    pub seed: u64,
    /// Embedded broker, or a real cluster.
    pub broker: BrokerArgs,
}

/// Seeded synthetic trades: 7 instruments random-walking around their reference prices, 200
/// traders, ~50 000 trades per second of event time.
pub fn synthetic_trades(
    n: usize,
    seed: u64,
    instruments: &Instruments,
) -> Vec<crate::wire::TradeMessage> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<_> = instruments.ids().collect();
    let mut mids: Vec<i64> = ids
        .iter()
        .map(|&i| {
            instruments
                .spec(i)
                .reference_price
                .and_then(|p| instruments.price_to_ticks(i, p).ok())
                .unwrap_or(10_000)
        })
        .collect();
    let mut ts = crate::generator::DEFAULT_START_MS;
    (0..n)
        .map(|k| {
            let j = rng.random_range(0..ids.len());
            mids[j] = (mids[j] + rng.random_range(-1..=1)).max(1);
            if k % 50 == 0 {
                ts += 1;
            }
            let buyer = rng.random_range(0..200u32);
            let seller = (buyer + rng.random_range(1..200)) % 200;
            crate::wire::TradeMessage {
                trade_id: k as u64 + 1,
                instrument: instruments.symbol(ids[j]).to_string(),
                price: instruments.ticks_to_price(ids[j], mids[j]),
                quantity: instruments.lots_to_qty(ids[j], rng.random_range(1..100)),
                buyer: format!("T{buyer:04}"),
                seller: format!("T{seller:04}"),
                buy_order_id: 2 * k as u64,
                sell_order_id: 2 * k as u64 + 1,
                aggressor: if rng.random_bool(0.5) {
                    "BUY".into()
                } else {
                    "SELL".into()
                },
                ts_ms: ts,
            }
        })
        .collect()
}

/// Runs the analytics benchmark and prints its figures.
pub fn run_analytics(cfg: &AnalyticsBenchConfig, instruments: &Instruments) -> anyhow::Result<()> {
    use crate::analytics::{AnalyticsArgs, TradeDecoder};
    use kappa_analytics::{BarEngine, PnlEngine};
    let args = AnalyticsArgs::default();
    let g = Instant::now();
    let trades = synthetic_trades(cfg.trades, cfg.seed, instruments);
    let mut decoder = TradeDecoder::new(instruments.clone(), usize::MAX);
    let payloads: Vec<Vec<u8>> = trades
        .iter()
        .map(|t| serde_json::to_vec(t).expect("serializes"))
        .collect();
    let t = Instant::now();
    let rows: Vec<_> = payloads
        .iter()
        .map(|p| decoder.decode(p))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{e}"))?;
    let decode_secs = t.elapsed().as_secs_f64();
    println!(
        "generated {} trades in {:.2}s; JSON decode alone {:.2} M trades/s",
        rows.len(),
        g.elapsed().as_secs_f64(),
        rows.len() as f64 / decode_secs / 1e6
    );

    let t = Instant::now();
    let mut bars = BarEngine::new(args.spec(), &args.sma);
    let mut n_bars = 0;
    for chunk in rows.chunks(cfg.batch) {
        n_bars += bars.push(chunk)?.bars.len();
    }
    n_bars += bars.flush()?.len();
    let s = t.elapsed().as_secs_f64();
    println!(
        "bars + SMA 5,20 (Polars, batches of {})  {:>6.2} M trades/s  ({} bars, {:.2}s)",
        cfg.batch,
        rows.len() as f64 / s / 1e6,
        n_bars,
        s
    );

    let t = Instant::now();
    let mut pnl = PnlEngine::new(args.spec(), decoder.unit_values());
    let mut n_rows = 0;
    for chunk in rows.chunks(cfg.batch) {
        n_rows += pnl.push(chunk)?.rows.len();
    }
    n_rows += pnl.flush()?.rows.len();
    let s = t.elapsed().as_secs_f64();
    println!(
        "P&L (integer accounting + windows)      {:>6.2} M trades/s  ({} pnl rows, {:.2}s)",
        rows.len() as f64 / s / 1e6,
        n_rows,
        s
    );

    // Live through Kafka: preload the trades topic, then time each job alone.
    let p = cfg.partitions;
    let layout = TopicLayout {
        order_events: p,
        ..TopicLayout::uniform(p)
    };
    let bench = BenchTopics::create(&cfg.broker, &layout)?;
    let kafka = &bench.kafka;
    let live = cfg.live_trades.min(payloads.len());
    let items = trades[..live]
        .iter()
        .zip(&payloads)
        .map(|(t, v)| (t.instrument.clone(), v.clone(), Some(t.ts_ms)));
    let sent = crate::generator::publish_to(
        kafka,
        &Partitioner::new(instruments),
        &kafka.topics().trades,
        items,
        live as u64,
        &Shutdown::new(),
    )?
    .published;
    // The embedded broker keeps at most 5 MiB per partition: count what it actually retains.
    let published = {
        let reader = create_reader(&kafka.reader())?;
        let mut n = 0;
        for q in 0..p {
            let (low, high) =
                crate::runtime::kafka::watermarks(&reader, &kafka.topics().trades, q)?;
            n += (high - low) as u64;
        }
        n
    };
    if published < sent {
        return Err(anyhow!("the broker retained {published} of {sent} trades: lower --live-trades or raise --partitions"));
    }
    let ceiling = passthrough(
        kafka,
        &kafka.topics().trades,
        Some(&bench.passthrough()),
        published,
    )?;
    println!(
        "ceiling           raw pass-through {:>6.2} M trades/s  (consume, produce unparsed; same broker and client settings)",
        ceiling / 1e6
    );
    let read_ceiling = passthrough(kafka, &kafka.topics().trades, None, published)?;
    println!(
        "ceiling           consume only     {:>6.2} M trades/s  (a fresh group reading every trade, nothing else)",
        read_ceiling / 1e6
    );
    for name in ["sma-calculator", "profit-calculator"] {
        let job = if name == "sma-calculator" {
            crate::analytics::sma::spawn(kafka, instruments, args.clone())?
        } else {
            crate::analytics::profit::spawn(kafka, instruments, args.clone())?
        };
        let assigned = |c: &Counters| Counters::get(&c.assigned) >= p as u64;
        if !job.wait_until(
            Instant::now() + Duration::from_secs(30),
            Duration::from_millis(1),
            assigned,
        ) {
            return Err(anyhow!("{name} did not get its partitions"));
        }
        let start = Instant::now();
        job.wait_until(
            start + Duration::from_secs(600),
            Duration::from_millis(1),
            |c| Counters::get(&c.consumed) >= published,
        );
        let s = start.elapsed().as_secs_f64();
        let consumed = Counters::get(&job.counters.consumed);
        let outputs = Counters::get(&job.counters.produced);
        job.stop()?;
        let rate = consumed as f64 / s;
        println!("{name:<17} live via Kafka {:>6.2} M trades/s  ({consumed} of {published} trades consumed in {s:.2}s, {outputs} outputs; {:.0} % of the pass-through, {:.0} % of consume only)", rate / 1e6, 100.0 * rate / ceiling, 100.0 * rate / read_ceiling);
        if consumed != published {
            return Err(anyhow!("{name} consumed {consumed} of {published}"));
        }
    }
    Ok(())
}

/// Recovery benchmark settings (real cluster only: the mock keeps 5 MiB per partition).
#[derive(Clone, Debug)]
pub struct RecoveryBenchConfig {
    pub broker: BrokerArgs,
    /// Orders of history before each restart, one run per entry.
    pub histories: Vec<usize>,
    pub partitions: i32,
    pub seed: u64,
    /// The match maker's `--snapshot-every`.
    pub snapshot_every: u64,
}

/// One `/metrics` sample of a job process: the named counters' values.
fn scrape(ops: &str) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(ops)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: {ops}\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let name = name.split('{').next()?;
            Some((name.to_string(), value.parse::<f64>().ok()?))
        })
        .fold(std::collections::HashMap::new(), |mut m, (k, v)| {
            *m.entry(k).or_insert(0.0) += v;
            m
        }))
}

/// A match-maker process (the binary beside this one) on the benchmark's topics.
fn match_maker_process(
    bench: &BenchTopics,
    ops: &str,
    snapshot_every: u64,
    transactional_id: &str,
) -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe()?.with_file_name("match-maker");
    std::process::Command::new(&exe)
        .args(["--brokers", &bench.kafka.brokers])
        .args(["--topic-prefix", &bench.kafka.topic_prefix])
        .args(["--ops-bind", ops])
        .args([
            "--transactional-id",
            transactional_id,
            "--static-membership",
        ])
        .args(["--snapshot-every", &snapshot_every.to_string()])
        .env(
            "RUST_LOG",
            std::env::var("KAPPA_BENCH_JOB_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(std::process::Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build every binary: cargo build --release)",
                exe.display()
            )
        })
}

/// Fresh topics (`partitions` each) with `count` generated orders (seed `seed`) published to
/// `orders` as fast as the broker takes them; returns the topics and the number published.
fn preload_orders(
    broker: &BrokerArgs,
    partitions: i32,
    count: usize,
    seed: u64,
    instruments: &Instruments,
) -> anyhow::Result<(BenchTopics, u64)> {
    let bench = BenchTopics::create(broker, &TopicLayout::uniform(partitions))?;
    let flow = FlowConfig {
        count,
        instruments: instruments.len(),
        seed,
        ..Default::default()
    };
    let items = generator::flow(&flow, instruments).map(|(k, v, t)| (k, v, Some(t)));
    let published = generator::publish(
        &bench.kafka,
        &Partitioner::new(instruments),
        items,
        count as u64,
        0.0,
        false,
        &Shutdown::new(),
    )?
    .published;
    Ok((bench, published))
}

/// Polls `ops` until `done(metrics)` or `limit` passes.
fn poll_metrics(
    ops: &str,
    limit: Duration,
    done: impl Fn(&std::collections::HashMap<String, f64>) -> bool,
) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(m) = scrape(ops) {
            if done(&m) {
                return Ok(m);
            }
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the match maker did not get there within {limit:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Match-maker restart-to-ready after `kill -9`, for each history length: publishes the history,
/// lets a match-maker process consume it (snapshotting as configured), kills it with SIGKILL,
/// starts it again and times from the new process's start until `/readyz` reports every partition
/// recovered — process start, group join, snapshot load, replay of the tail after the snapshot.
/// Also prints the snapshots' size and time per partition, and the cost of a replay from the
/// start (the first run), which is what a restart cost before snapshots.
pub fn run_recovery(cfg: &RecoveryBenchConfig, instruments: &Instruments) -> anyhow::Result<()> {
    if cfg.broker.brokers.is_none() {
        return Err(anyhow!(
            "bench-recovery needs a real cluster (--brokers): the embedded broker keeps only \
             5 MiB per partition and runs in this process"
        ));
    }
    println!(
        "{:>11} {:>11} {:>10} {:>12} {:>13} {:>8} {:>10} {:>10}",
        "history",
        "first run s",
        "snapshots",
        "state B/snap",
        "stored B/snap",
        "ms/snap",
        "restart s",
        "replayed"
    );
    for &history in &cfg.histories {
        let (bench, published) =
            preload_orders(&cfg.broker, cfg.partitions, history, cfg.seed, instruments)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let ops = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let mut first = match_maker_process(&bench, &ops, cfg.snapshot_every, "bench-recovery")?;
        let caught_up = poll_metrics(&ops, Duration::from_secs(3600), |m| {
            m.get("kappa_messages_consumed_total")
                .copied()
                .unwrap_or(0.0)
                >= published as f64
        });
        let first_secs = started.elapsed().as_secs_f64();
        let _ = first.kill();
        let _ = first.wait();
        let m = caught_up?;
        let snaps = m.get("kappa_snapshots_total").copied().unwrap_or(0.0);
        let per = |name: &str| m.get(name).copied().unwrap_or(0.0) / snaps.max(1.0);

        let restarted = Instant::now();
        let mut second = match_maker_process(&bench, &ops, cfg.snapshot_every, "bench-recovery")?;
        let ready = poll_metrics(&ops, Duration::from_secs(3600), |m| {
            m.get("kappa_ready").copied() == Some(1.0)
        });
        let restart_secs = restarted.elapsed().as_secs_f64();
        let _ = second.kill();
        let _ = second.wait();
        let r = ready?;
        println!(
            "{:>11} {:>11.2} {:>10} {:>12.0} {:>13.0} {:>8.1} {:>10.2} {:>10}",
            history,
            first_secs,
            snaps,
            per("kappa_snapshot_state_bytes_total"),
            per("kappa_snapshot_bytes_total"),
            per("kappa_snapshot_micros_total") / 1000.0,
            restart_secs,
            r.get("kappa_messages_replayed_total")
                .copied()
                .unwrap_or(0.0)
        );
    }
    println!(
        "(restart s: from spawning the killed match maker's successor to /readyz 200, every \
         partition recovered; replayed: input replayed after the snapshots; {} partitions, \
         --snapshot-every {})",
        cfg.partitions, cfg.snapshot_every
    );
    Ok(())
}

/// Scale-out benchmark settings (real cluster only).
#[derive(Clone, Debug)]
pub struct ScaleBenchConfig {
    pub broker: BrokerArgs,
    /// Orders published before the match makers start.
    pub orders: usize,
    pub partitions: i32,
    /// Match-maker processes of one consumer group, one run per entry.
    pub instances: Vec<usize>,
    pub seed: u64,
}

/// Partition parallelism as deployed: `n` match-maker processes in one consumer group share the
/// partitions of a preloaded `orders` (engines are independent per partition), each with its own
/// transactional id. The rate is taken over the steady part of the run — from 10 % to 90 % of
/// the orders consumed, summed over the processes' `/metrics` — so process start and the group
/// join do not count.
pub fn run_scale(cfg: &ScaleBenchConfig, instruments: &Instruments) -> anyhow::Result<()> {
    if cfg.broker.brokers.is_none() {
        return Err(anyhow!(
            "bench-scale needs a real cluster (--brokers): the embedded broker keeps only 5 MiB \
             per partition and lives in one process"
        ));
    }
    println!(
        "{:>9} {:>10} {:>14} {:>18} {:>10}",
        "processes", "orders", "orders/s", "orders/s/process", "total s"
    );
    let mut base = None;
    for &n in &cfg.instances {
        let n = n.max(1);
        let (bench, published) = preload_orders(
            &cfg.broker,
            cfg.partitions,
            cfg.orders,
            cfg.seed,
            instruments,
        )?;
        let published = published as f64;
        let mut ops = Vec::new();
        for _ in 0..n {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            ops.push(format!("127.0.0.1:{port}"));
        }
        let started = Instant::now();
        let mut children = Vec::new();
        for (i, ops) in ops.iter().enumerate() {
            children.push(match_maker_process(
                &bench,
                ops,
                200_000,
                &format!("bench-scale-{i}"),
            )?);
        }
        let consumed = || -> f64 {
            ops.iter()
                .filter_map(|o| scrape(o).ok())
                .map(|m| {
                    m.get("kappa_messages_consumed_total")
                        .copied()
                        .unwrap_or(0.0)
                })
                .sum()
        };
        let (mut t10, mut t90) = (None, None);
        let deadline = started + Duration::from_secs(3600);
        let outcome = loop {
            let c = consumed();
            let now = Instant::now();
            if t10.is_none() && c >= 0.1 * published {
                t10 = Some((now, c));
            }
            if c >= 0.9 * published && t90.is_none() {
                t90 = Some((now, c));
            }
            if c >= published {
                break Ok(now);
            }
            if now > deadline {
                break Err(anyhow!(
                    "{n} match makers did not consume {published} orders in an hour"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let finished = outcome?;
        let ((a, ca), (b, cb)) = (t10.expect("crossed 10 %"), t90.expect("crossed 90 %"));
        let rate = (cb - ca) / (b - a).as_secs_f64().max(1e-9);
        let base = *base.get_or_insert(rate);
        println!(
            "{:>9} {:>10} {:>14.0} {:>18.0} {:>10.2}   ({:.2}x one process)",
            n,
            published,
            rate,
            rate / n as f64,
            (finished - started).as_secs_f64(),
            rate / base
        );
    }
    println!(
        "(orders/s: from 10 % to 90 % of the orders consumed, summed over the processes; {} \
         partitions; each process a match maker with transactions and its own transactional id)",
        cfg.partitions
    );
    Ok(())
}

/// `kappa bench-fix`: FIX order entry under load.
#[derive(Clone, Debug)]
pub struct FixBenchConfig {
    pub broker: crate::runtime::broker::BrokerArgs,
    /// Orders sent by each of the two sessions.
    pub orders: usize,
    /// Orders per second per session (paced).
    pub rate: f64,
    /// Journal durability (`fdatasync` per batch) as in production.
    pub sync: bool,
    /// Run the match maker without Kafka transactions.
    pub no_transactions: bool,
}

/// Two QuickFIX-like sessions (our codec over TCP) send limit orders that cross half the time
/// through a fix-gateway and the match maker, in-process, on the embedded broker or a cluster:
/// orders/s sustained and the latency from each NewOrderSingle leaving the client to its first
/// ExecutionReport arriving (New or Trade), p50/p99/p99.9/max.
pub fn run_fix(cfg: &FixBenchConfig, instruments: &Instruments) -> anyhow::Result<()> {
    use crate::fix::codec::{decode, Decoded, Message};
    use crate::fix::tag::*;
    use std::io::{Read as _, Write as _};

    let bench = BenchTopics::create(&cfg.broker, &TopicLayout::uniform(4))?;
    let kafka = bench.kafka.clone();
    let mut opts = matchmaker::Options::default();
    opts.runtime.no_transactions = cfg.no_transactions;
    let mm = matchmaker::spawn(&kafka, instruments, opts)?;
    // Timed from when the match maker has its partitions (a group join takes seconds).
    if !mm.wait_until(
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(1),
        |c| Counters::get(&c.assigned) >= 4,
    ) {
        return Err(anyhow!("match maker did not get its partitions"));
    }
    let dir = std::env::temp_dir().join(format!("kappa-bench-fix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("keys");
    let traders = ["BENCHBUY", "BENCHSELL"];
    let mut keys = Vec::new();
    for t in traders {
        keys.push(crate::serving::auth::add_key(Some(&key_file), t, None)?.0);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let args = crate::fix::server::FixArgs {
        bind: ([127, 0, 0, 1], port).into(),
        comp_id: "KAPPA".into(),
        state_dir: dir.join("state"),
        api_keys: Some(key_file),
        order_id_key: Some("bench".into()),
        resend_window: 100_000,
        max_orders_per_session: 1_000_000,
        max_sessions: 4,
        max_connections: 16,
        max_message: 16 * 1024,
        compact_bytes: 64 << 20,
        no_sync: !cfg.sync,
        ops_bind: None,
    };
    let stop = Shutdown::new();
    let gateway = {
        let (kafka, instruments, stop) = (kafka.clone(), instruments.clone(), stop.clone());
        std::thread::spawn(move || crate::fix::server::run(&kafka, &instruments, &args, &stop))
    };
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            return Err(anyhow!("the gateway did not listen"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stamp = |m: &mut Message, sender: &str, seq: u64| {
        let now = crate::fix::codec::utc_timestamp(chrono::Utc::now().timestamp_millis());
        let mut bytes = Vec::new();
        Message::with_header(m, sender, "KAPPA", seq, &now).encode(&mut bytes);
        bytes
    };
    println!(
        "fix-gateway on {addr} (journal {}), match maker in-process ({}); 2 sessions × {} orders at {} orders/s each",
        if cfg.sync { "fdatasync per batch" } else { "no fsync" },
        if cfg.no_transactions { "no transactions" } else { "transactions" },
        cfg.orders,
        cfg.rate
    );
    let start = Instant::now();
    let mut sessions = Vec::new();
    for (i, (trader, key)) in traders.iter().zip(&keys).enumerate() {
        let (trader, key, n, rate, addr) = (
            trader.to_string(),
            key.clone(),
            cfg.orders,
            cfg.rate,
            addr.clone(),
        );
        let mut stream = std::net::TcpStream::connect(&addr)?;
        stream.set_nodelay(true)?;
        let mut reader = stream.try_clone()?;
        let mut logon = Message::new("A");
        logon
            .push(ENCRYPT_METHOD, "0")
            .push(HEART_BT_INT, "30")
            .push(PASSWORD, key);
        stream.write_all(&stamp(&mut logon, &trader, 1))?;
        let sent_at: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>> = std::sync::Arc::new(
            (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        );
        let t0 = Instant::now();
        // Reader: the first report per ClOrdID; latency from its send.
        let rx = {
            let sent_at = sent_at.clone();
            std::thread::spawn(move || -> anyhow::Result<(Vec<u64>, usize)> {
                let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 65536]);
                let mut seen = vec![false; n];
                let (mut lat, mut reports) = (Vec::with_capacity(n), 0usize);
                while lat.len() < n {
                    let got = reader.read(&mut chunk)?;
                    if got == 0 {
                        return Err(anyhow!("the gateway closed the session"));
                    }
                    buf.extend_from_slice(&chunk[..got]);
                    let now = t0.elapsed().as_nanos() as u64;
                    loop {
                        match decode(&buf, 1 << 20) {
                            Decoded::Message { message, len } => {
                                buf.drain(..len);
                                if message.msg_type() == "5" {
                                    return Err(anyhow!("logout: {:?}", message.get(TEXT)));
                                }
                                if message.msg_type() != "8" {
                                    continue;
                                }
                                reports += 1;
                                let idx: usize = message
                                    .get(CL_ORD_ID)
                                    .and_then(|c| c[1..].parse().ok())
                                    .unwrap_or(usize::MAX);
                                if idx < n && !seen[idx] {
                                    seen[idx] = true;
                                    let s = sent_at[idx].load(std::sync::atomic::Ordering::Relaxed);
                                    lat.push(now.saturating_sub(s));
                                }
                            }
                            Decoded::Incomplete => break,
                            other => {
                                return Err(anyhow!("undecodable from the gateway: {other:?}"))
                            }
                        }
                    }
                }
                Ok((lat, reports))
            })
        };
        // Sender: paced limit orders around 15.00; the buyer's and seller's prices overlap so
        // about half trade.
        let tx = std::thread::spawn(move || -> anyhow::Result<()> {
            let side = if i == 0 { "1" } else { "2" };
            for k in 0..n {
                let due = Duration::from_secs_f64(k as f64 / rate);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                let tick = (k % 7) as i64 - 3 + if i == 0 { 1 } else { -1 };
                let price = rust_decimal::Decimal::new(1500 + tick * 5, 2);
                let mut m = Message::new("D");
                m.push(CL_ORD_ID, format!("C{k}"))
                    .push(SYMBOL, "TCS")
                    .push(SIDE, side)
                    .push(ORDER_QTY, "1")
                    .push(ORD_TYPE, "2")
                    .push(PRICE, price.to_string())
                    .push(TIME_IN_FORCE, "3");
                let bytes = stamp(&mut m, &trader, k as u64 + 2);
                sent_at[k].store(
                    t0.elapsed().as_nanos() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                stream.write_all(&bytes)?;
            }
            Ok(())
        });
        sessions.push((tx, rx));
    }
    let mut all = Vec::new();
    let mut reports = 0;
    for (tx, rx) in sessions {
        tx.join().map_err(|_| anyhow!("sender panicked"))??;
        let (lat, r) = rx.join().map_err(|_| anyhow!("reader panicked"))??;
        all.extend(lat);
        reports += r;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.trigger();
    let _ = gateway.join();
    mm.stop()?;
    all.sort_unstable();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1e6;
    println!(
        "{} orders, {} execution reports in {:.2}s: {:.0} orders/s; order → first report: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        all.len(),
        reports,
        secs,
        all.len() as f64 / secs,
        q(0.50),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
