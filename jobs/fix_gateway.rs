//! `fix-gateway`: FIX 4.4 order entry. Traders' sessions in (logon with their API key), orders to
//! `orders`; `order-events` back as ExecutionReports.

use clap::Parser;
use kappa_exchange::config;
use kappa_exchange::fix::server::{self, FixArgs};
use kappa_exchange::runtime::{kafka::KafkaArgs, shutdown::Shutdown};

#[derive(Parser)]
#[command(
    name = "fix-gateway",
    version,
    about = "Accept FIX 4.4 order-entry sessions: NewOrderSingle, cancel and replace to `orders`; ExecutionReports from `order-events`"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    common: config::JobArgs,
    #[command(flatten)]
    fix: FixArgs,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let instruments = a.common.init()?;
    let shutdown = Shutdown::on_signals()?;
    server::run(&a.kafka, &instruments, &a.fix, &shutdown)
}
