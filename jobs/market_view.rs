//! `market-view`: the serving layer. Reads book, trades, order events and analytics; serves the
//! HTTP API, order entry and the live dashboard.

use clap::Parser;
use kappa_exchange::config;
use kappa_exchange::runtime::{kafka::KafkaArgs, shutdown::Shutdown};
use kappa_exchange::serving::{self, ServeArgs};

#[derive(Parser)]
#[command(
    name = "market-view",
    version,
    about = "Serve the market (top-5 book, trades, bars+SMA, P&L) as an HTTP API and a live dashboard; accept orders"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    common: config::JobArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let instruments = a.common.init()?;
    let shutdown = Shutdown::on_signals()?;
    serving::run(&a.kafka, &instruments, &a.serve, &shutdown)
}
