//! `profit-calculator`: Compute positions, realized/unrealized P&L per trader and a leaderboard from trades; publish to analytics.

use clap::Parser;
use kappa_exchange::analytics::{self, AnalyticsArgs};
use kappa_exchange::processor::Counters;
use kappa_exchange::{config, kafka::KafkaArgs, shutdown::Shutdown, telemetry};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "profit-calculator",
    version,
    about = "Compute positions, realized/unrealized P&L per trader and a leaderboard from trades; publish to analytics"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    analytics: AnalyticsArgs,
    /// Instrument table (TOML); defaults to the compiled-in data/instruments.toml.
    #[arg(long, env = "KAPPA_INSTRUMENTS")]
    instrument_file: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    telemetry::init_logging(a.log_json);
    let shutdown = Shutdown::on_signals()?;
    let instruments = config::load_instruments(a.instrument_file.as_deref())?;
    analytics::profit::run(
        &a.kafka,
        &instruments,
        &a.analytics,
        &shutdown,
        &Counters::default(),
    )
}
