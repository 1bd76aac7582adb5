//! `profit-calculator`: Compute positions, realized/unrealized P&L per trader and a leaderboard from trades; publish to analytics.

use clap::Parser;
use kappa_exchange::analytics::{self, AnalyticsArgs};
use kappa_exchange::config;
use kappa_exchange::runtime::metrics::Counters;
use kappa_exchange::runtime::ops::OpsArgs;
use kappa_exchange::runtime::{kafka::KafkaArgs, shutdown::Shutdown};
use std::sync::Arc;

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
    a.ops
        .spawn("profit-calculator", counters.clone(), &shutdown)?;
    analytics::profit::run(&a.kafka, &instruments, &a.analytics, &shutdown, &counters)
}
