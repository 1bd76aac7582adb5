//! `kappa`: the umbrella command. `kappa demo` runs the exchange end to end with nothing to
//! install; `kappa simulate` runs the matching engine in-process over generated order flow.

use clap::{Parser, Subcommand};
use kappa_exchange::{config, simulate};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kappa",
    version,
    about = "Kappa Exchange: a stock exchange as a Kappa-architecture stream pipeline"
)]
struct Cli {
    /// Instrument table (TOML); defaults to the compiled-in data/instruments.toml.
    #[arg(long, env = "KAPPA_INSTRUMENTS", global = true)]
    instruments: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exchange end to end on generated orders and print a market summary.
    Demo(SimArgs),
    /// Run the matching engine in-process over generated orders and print a market summary.
    Simulate(SimArgs),
}

#[derive(clap::Args)]
struct SimArgs {
    /// Number of generated commands (new, cancel, amend).
    #[arg(long, default_value_t = 200_000)]
    count: usize,
    /// Number of instruments to trade (the first N of the table).
    #[arg(long, default_value_t = 5)]
    instruments_used: usize,
    /// Random seed: the same seed gives the same orders and the same trades.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let instruments = config::load_instruments(cli.instruments.as_deref())?;
    match cli.command {
        Command::Demo(a) | Command::Simulate(a) => {
            let started = std::time::Instant::now();
            let summary = simulate::simulate(&instruments, a.count, a.instruments_used, a.seed);
            print!("{}", simulate::render(&summary));
            println!("done in {:.2}s", started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
