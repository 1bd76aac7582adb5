//! `sma-calculator`: Compute OHLCV bars and simple moving averages per instrument from trades; publish to analytics.

use clap::Parser;
use kappa_exchange::analytics::{self, AnalyticsArgs};
use kappa_exchange::config;
use kappa_exchange::runtime::metrics::Counters;
use kappa_exchange::runtime::ops::OpsArgs;
use kappa_exchange::runtime::{kafka::KafkaArgs, shutdown::Shutdown};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sma-calculator",
    version,
    about = "Compute OHLCV bars and simple moving averages per instrument from trades; publish to analytics"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    common: config::JobArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    analytics: AnalyticsArgs,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let instruments = a.common.init()?;
    let shutdown = Shutdown::on_signals()?;
    let counters = Arc::new(Counters::default());
    a.ops.spawn("sma-calculator", counters.clone(), &shutdown)?;
    analytics::sma::run(&a.kafka, &instruments, &a.analytics, &shutdown, &counters)
}
