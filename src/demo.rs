//! The one-command demo: an embedded broker (or a real cluster, `--brokers`) with every job running
//! together (order generator, match maker, SMA and profit calculators, and the market-view server),
//! a live line every second,
//! a market summary read back from the topics with consistency checks (every order consumed;
//! trades on the topic = trades matched = trades each analytics job consumed), then — when serving
//! — live flow at a fixed rate with the dashboard up until Ctrl-C.

use crate::analytics::{self, AnalyticsArgs};
use crate::generator::{self, FlowConfig};
use crate::matchmaker;
use crate::report::{render, render_analytics, summarize_topics, Summary};
use crate::runtime::broker::BrokerArgs;
use crate::runtime::kafka::KafkaArgs;
use crate::runtime::metrics::Counters;
use crate::runtime::shutdown::Shutdown;
use crate::serving::{self, ServeArgs};
use crate::topics::{Partitioner, TopicLayout};
use anyhow::{anyhow, Context as _};
use kappa_engine::Instruments;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The trader the demo's printed API key belongs to.
pub const DEMO_TRADER: &str = "DEMO";

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub flow: FlowConfig,
    /// Publishing rate (orders/s of wall-clock time; 0 = as fast as possible).
    pub rate: f64,
    /// Serve the API and dashboard (and keep running with live flow until Ctrl-C); None: run the
    /// batch, print the summary and exit.
    pub serve: Option<ServeArgs>,
    /// Live flow after the batch while serving, in orders/s (0: none, the market stays still).
    pub live_rate: f64,
    /// The broker: embedded, or a real cluster (`--brokers`).
    pub broker: BrokerArgs,
}

/// What the demo measured and verified.
#[derive(Debug)]
pub struct DemoReport {
    pub published: u64,
    pub consumed: u64,
    pub trades_matched: u64,
    pub trades_on_topic: u64,
    pub rejects: u64,
    pub seconds: f64,
    pub summary: Summary,
}

/// Runs the demo, printing progress to stderr and the summary to stdout.
pub fn run(
    config: &DemoConfig,
    instruments: &Instruments,
    shutdown: &Shutdown,
) -> anyhow::Result<DemoReport> {
    let (broker, prefix) = config.broker.open("demo")?;
    let kafka = broker.kafka(&prefix);
    broker.create_topics(&TopicLayout::default().plan(&prefix))?;
    let (b, t) = (broker.bootstrap(), kafka.topics());
    println!("{} at {b}", broker.describe());
    if !prefix.is_empty() {
        println!(
            "  topics and consumer groups of this run are prefixed {prefix:?} (delete them: kappa topics delete --brokers {b} --topic-prefix {prefix})"
        );
    }
    println!(
        "  watch trades:   kcat -b {b} -C -t {} -o beginning",
        t.trades
    );
    println!(
        "  one instrument: kcat -b {b} -C -t {} -o beginning -f '%k %s\\n' | grep '^TCS '",
        t.book
    );
    println!(
        "  one trader:     kcat -b {b} -C -t {} -o beginning -f '%k %s\\n' | grep '^T0007 '",
        t.analytics
    );

    let server = match &config.serve {
        Some(args) => {
            let mut args = args.clone();
            if args.api_keys.is_none() {
                // A credential for this run only, shown here and nowhere else.
                let key = serving::auth::new_key();
                println!("demo trader {DEMO_TRADER}, API key (this run only): {key}");
                args.demo_credential = Some((DEMO_TRADER.to_string(), key));
            }
            let server = serving::spawn(&kafka, instruments, &args, shutdown)?;
            println!("dashboard and API at {}", server.url());
            if let Some(ops) = server.ops_addr {
                println!("metrics at http://{ops}/metrics");
            }
            Some(server)
        }
        None => None,
    };

    let mm = matchmaker::spawn(&kafka, instruments, matchmaker::Options::default())?;
    let counters = mm.counters.clone();
    let sma = analytics::sma::spawn(&kafka, instruments, AnalyticsArgs::default())?;
    let profit = analytics::profit::spawn(&kafka, instruments, AnalyticsArgs::default())?;
    let (sma_counters, profit_counters) = (sma.counters.clone(), profit.counters.clone());

    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (counters, published, done) = (counters.clone(), published.clone(), done.clone());
        let (sma_counters, profit_counters) = (sma_counters.clone(), profit_counters.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                if start.elapsed().as_millis() % 1000 < 250 {
                    eprintln!(
                        "[{:>5.1}s] published {:>8}  matched {:>8}  trades {:>7}  rejects {:>5}  bars {:>5}  pnl updates {:>6}",
                        start.elapsed().as_secs_f64(),
                        published.load(Ordering::Relaxed),
                        Counters::get(&counters.consumed),
                        Counters::get(&counters.items),
                        Counters::get(&counters.rejected),
                        Counters::get(&sma_counters.items),
                        Counters::get(&profit_counters.items),
                    );
                }
            }
        })
    };

    let started = Instant::now();
    let items = generator::flow(&config.flow, instruments).map(|(k, p, t)| {
        published.fetch_add(1, Ordering::Relaxed);
        (k, p, Some(t))
    });
    let stats = generator::publish(
        &kafka,
        &Partitioner::new(instruments),
        items,
        config.flow.count as u64,
        config.rate,
        false,
        shutdown,
    )?;
    // Wait for the match maker to consume everything that was published (allowing ~10 k
    // orders/s on a loaded machine), and the analytics jobs every trade.
    let deadline = Instant::now() + Duration::from_secs(300 + stats.published / 10_000);
    let every = Duration::from_millis(50);
    mm.wait_until(deadline, every, |c| {
        Counters::get(&c.consumed) >= stats.published || shutdown.is_triggered()
    });
    // And for the analytics jobs to consume every trade.
    let trades = Counters::get(&counters.items);
    for job in [&sma, &profit] {
        job.wait_until(deadline, every, |c| {
            Counters::get(&c.consumed) >= trades || shutdown.is_triggered()
        });
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.join();
    let seconds = started.elapsed().as_secs_f64();

    let (mut summary, trades_on_topic) = summarize_topics(&kafka, instruments)?;
    summary.commands = stats.published as usize;
    summary.rejects = Counters::get(&counters.rejected) as usize;
    summary.events = Counters::get(&counters.produced) as usize;
    let report = DemoReport {
        published: stats.published,
        consumed: Counters::get(&counters.consumed),
        trades_matched: Counters::get(&counters.items),
        trades_on_topic,
        rejects: Counters::get(&counters.rejected),
        seconds,
        summary,
    };
    print!("{}", render(&report.summary));
    print!("{}", render_analytics(&kafka)?);
    println!(
        "{} orders in {:.2}s{} ({:.0} orders/s; see `kappa bench-pipeline`); consumed {}, trades matched {}, trades on topic {}",
        report.published,
        seconds,
        if broker.is_external() { "" } else { ", including the embedded broker's ~3 s first consumer-group join" },
        report.published as f64 / seconds.max(1e-9),
        report.consumed,
        report.trades_matched,
        report.trades_on_topic
    );
    let ok = report.consumed == report.published
        && report.trades_matched == report.trades_on_topic
        && Counters::get(&sma_counters.consumed) == report.trades_matched
        && Counters::get(&profit_counters.consumed) == report.trades_matched;
    println!(
        "consistency check: {}",
        if ok {
            "OK (nothing lost, nothing duplicated)"
        } else {
            "FAILED"
        }
    );
    if let Some(server) = &server {
        println!(
            "live: {} orders/s on top; dashboard at {} — Ctrl-C to stop",
            config.live_rate,
            server.url()
        );
        live(config, instruments, &kafka, shutdown)?;
    }
    shutdown.trigger();
    let mm_result = mm.stop();
    let sma_result = sma.stop();
    let profit_result = profit.stop();
    mm_result.context("match maker")?;
    sma_result.context("SMA calculator")?;
    profit_result.context("profit calculator")?;
    if let Some(server) = server {
        server.join().context("market view")?;
    }
    drop(broker);
    if !ok {
        return Err(anyhow!("demo consistency check failed"));
    }
    Ok(report)
}

/// The live phase: a fresh endless flow (its own seed and id range, event time from now) at
/// `config.live_rate` orders/s until `shutdown`; with rate 0, only waits.
fn live(
    config: &DemoConfig,
    instruments: &Instruments,
    kafka: &KafkaArgs,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    if config.live_rate <= 0.0 {
        while !shutdown.is_triggered() {
            std::thread::sleep(Duration::from_millis(200));
        }
        return Ok(());
    }
    let flow = FlowConfig {
        // Shapes the flow only (opening phase, resting orders); the flow itself has no end.
        count: 20_000,
        seed: config.flow.seed.wrapping_add(1),
        event_rate: config.live_rate,
        start_ms: chrono::Utc::now().timestamp_millis(),
        first_order_id: 2_000_000_001,
        ..config.flow.clone()
    };
    let items = generator::endless_flow(&flow, instruments).map(|(k, p, t)| (k, p, Some(t)));
    let partitioner = Partitioner::new(instruments);
    generator::publish(
        kafka,
        &partitioner,
        items,
        u64::MAX,
        config.live_rate,
        false,
        shutdown,
    )?;
    Ok(())
}
