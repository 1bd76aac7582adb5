//! End-to-end pipeline benchmark on the embedded broker: the order generator publishes as fast
//! as it can while the match maker consumes, matches and publishes; the figure is orders/s from
//! the first publish until the match maker has consumed every order, with verified counts.

use crate::demo::summarize_topics;
use crate::embedded::{EmbeddedKafka, TopicLayout};
use crate::generator::{self, FlowConfig};
use crate::kafka::KafkaArgs;
use crate::matchmaker::{self, Counters};
use crate::shutdown::Shutdown;
use anyhow::anyhow;
use kappa_engine::Instruments;
use std::time::{Duration, Instant};

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
}

/// Runs the benchmark and prints its figures.
pub fn run(cfg: &BenchConfig, instruments: &Instruments) -> anyhow::Result<BenchReport> {
    let p = cfg.partitions;
    let layout = TopicLayout {
        orders: p,
        trades: p,
        order_events: 2 * p,
        book: p,
        rejects: p,
        analytics: p,
    };
    let broker = EmbeddedKafka::start(&layout.topics(""))?;
    let kafka = KafkaArgs::new(broker.bootstrap());
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
    if cfg.preload {
        let t = Instant::now();
        published = generator::publish(
            &kafka,
            pending.take().expect("items"),
            cfg.count as u64,
            0.0,
            false,
            &Shutdown::new(),
        )?
        .published;
        publish_secs = t.elapsed().as_secs_f64();
    }
    let opts = matchmaker::Options {
        batch_size: cfg.batch_size,
        ..Default::default()
    };
    let mm = matchmaker::spawn(&kafka, instruments, opts)?;
    let counters = mm.counters.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Counters::get(&counters.assigned) < p as u64 {
        if Instant::now() > deadline || mm.is_finished() {
            return Err(anyhow!("match maker did not get its partitions"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let start = Instant::now();
    if let Some(it) = pending.take() {
        published = generator::publish(&kafka, it, cfg.count as u64, 0.0, false, &Shutdown::new())?
            .published;
        publish_secs = start.elapsed().as_secs_f64();
    }
    let stats = generator::PublishStats {
        published,
        bytes: 0,
    };
    while Counters::get(&counters.consumed) < stats.published {
        if mm.is_finished() || start.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let end_to_end_secs = start.elapsed().as_secs_f64();
    mm.stop()?;
    let (_, trades_on_topic) = summarize_topics(&kafka, instruments)?;
    let report = BenchReport {
        orders: Counters::get(&counters.consumed),
        publish_secs,
        end_to_end_secs,
        outputs: Counters::get(&counters.produced),
        trades_matched: Counters::get(&counters.items),
        trades_on_topic,
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
