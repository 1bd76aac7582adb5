//! `order-generator`: publishes a seeded, rate-controlled order flow (or a file) to `orders`.

use clap::Parser;
use kappa_exchange::config;
use kappa_exchange::generator::{self, FlowConfig, DEFAULT_START_MS};
use kappa_exchange::runtime::{kafka::KafkaArgs, shutdown::Shutdown};
use kappa_exchange::topics::Partitioner;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "order-generator",
    version,
    about = "Publish realistic buy/sell orders to the orders topic"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    common: config::JobArgs,
    /// Number of orders (new, cancel, amend) to publish.
    #[arg(long, env = "GEN_COUNT", default_value_t = 100_000)]
    count: usize,
    /// Publishing rate in orders per second of wall-clock time (0 = as fast as possible).
    #[arg(long, env = "GEN_RATE", default_value_t = 0.0)]
    rate: f64,
    /// Number of instruments to trade (the first N of the instrument table).
    #[arg(long, default_value_t = 5)]
    instruments: usize,
    /// Number of distinct traders.
    #[arg(long, default_value_t = 200)]
    traders: usize,
    /// Random seed: the same seed (and --first-order-id) publishes the same orders, byte for byte.
    #[arg(long, env = "GEN_SEED", default_value_t = 42)]
    seed: u64,
    /// Event-time arrival rate of the Poisson process (orders per second of event time).
    #[arg(long, default_value_t = 10_000.0)]
    event_rate: f64,
    /// Event time of the first order, in ms since the Unix epoch.
    #[arg(long, default_value_t = DEFAULT_START_MS)]
    start_ms: i64,
    /// First order id. Default: the run's start time in ms × 1000, so runs one after another
    /// never reuse an id (see `generator::run_first_order_id`); give concurrent runs their own.
    #[arg(long, env = "GEN_FIRST_ORDER_ID")]
    first_order_id: Option<u64>,
    /// Publish this CSV or JSON-lines file instead of generated flow.
    #[arg(long)]
    from_file: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let instruments = a.common.init()?;
    let shutdown = Shutdown::on_signals()?;
    let progress = !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let started = std::time::Instant::now();
    let partitioner = Partitioner::new(&instruments);
    let stats = match &a.from_file {
        Some(path) => {
            let rows = generator::read_file(path)?;
            let n = rows.len() as u64;
            generator::publish(
                &a.kafka,
                &partitioner,
                rows.into_iter().map(|(k, p)| (k, p, None)),
                n,
                a.rate,
                progress,
                &shutdown,
            )?
        }
        None => {
            let cfg = FlowConfig {
                count: a.count,
                instruments: a.instruments,
                traders: a.traders,
                seed: a.seed,
                event_rate: a.event_rate,
                start_ms: a.start_ms,
                first_order_id: a.first_order_id.unwrap_or_else(|| {
                    generator::run_first_order_id(chrono::Utc::now().timestamp_millis())
                }),
            };
            let items = generator::flow(&cfg, &instruments).map(|(k, p, t)| (k, p, Some(t)));
            generator::publish(
                &a.kafka,
                &partitioner,
                items,
                a.count as u64,
                a.rate,
                progress,
                &shutdown,
            )?
        }
    };
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        published = stats.published,
        bytes = stats.bytes,
        seconds = format!("{secs:.2}"),
        rate = format!("{:.0}/s", stats.published as f64 / secs.max(1e-9)),
        "order generator done"
    );
    Ok(())
}
