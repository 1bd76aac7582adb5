//! `match-maker`: price-time-priority matching per `orders` partition, publishing trades, order
//! events, rejects and top-5 book depth.

use clap::Parser;
use kappa_exchange::config;
use kappa_exchange::matchmaker::{self, Options};
use kappa_exchange::runtime::metrics::Counters;
use kappa_exchange::runtime::ops::OpsArgs;
use kappa_exchange::runtime::processor::LoopArgs;
use kappa_exchange::runtime::{kafka::KafkaArgs, shutdown::Shutdown};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "match-maker",
    version,
    about = "Match orders from the orders topic; publish trades, order events, rejects and book depth"
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    common: config::JobArgs,
    #[command(flatten)]
    ops: OpsArgs,
    /// Consumer group (all match-maker replicas share it; partitions are spread over them).
    #[arg(long, env = "MM_GROUP", default_value = "match-maker")]
    group: String,
    /// Most orders handled per batch.
    #[arg(long, default_value_t = 5_000)]
    batch_size: usize,
    /// Levels per side in book updates (1-10).
    #[arg(long, default_value_t = 5)]
    depth: usize,
    /// Finished orders whose ids stay reserved (per `orders` partition): a new order reusing the
    /// id of a live order or of one of the last N finished ones is rejected `duplicate_order_id`.
    /// Memory ≈ 20 bytes × N per partition. Changing it invalidates snapshots (rebuild by replay).
    #[arg(long, env = "MM_FINISHED_IDS_WINDOW", default_value_t = kappa_engine::DEFAULT_FINISHED_IDS_WINDOW)]
    finished_ids_window: usize,
    /// Exit once caught up and idle for this many milliseconds (batch/replay runs).
    #[arg(long)]
    idle_exit_ms: Option<u64>,
    #[command(flatten)]
    runtime: LoopArgs,
    /// Prefix for the output topics only, e.g. `replay.` to rebuild side by side.
    #[arg(long, env = "MM_OUTPUT_PREFIX")]
    output_prefix: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let instruments = a.common.init()?;
    let shutdown = Shutdown::on_signals()?;
    let opts = Options {
        group: a.group,
        batch_size: a.batch_size.max(1),
        idle_exit: a.idle_exit_ms.map(Duration::from_millis),
        engine: kappa_engine::EngineConfig {
            depth_levels: a.depth,
            finished_ids_window: a.finished_ids_window,
        },
        runtime: a.runtime,
        output_prefix: a.output_prefix,
    };
    let counters = Arc::new(Counters::default());
    a.ops.spawn("match-maker", counters.clone(), &shutdown)?;
    matchmaker::run(&a.kafka, &instruments, &opts, &shutdown, &counters)
}
