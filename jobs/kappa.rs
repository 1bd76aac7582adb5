//! `kappa`: the umbrella command. `kappa demo` runs the whole pipeline on an embedded broker with
//! nothing to install (or on a real cluster, `--brokers`); `kappa broker` only hosts the embedded
//! broker so the jobs can run as separate processes against it; `kappa topics` creates, checks,
//! deletes or prints (for Kubernetes) the topics; `kappa simulate` runs the engine in-process.

use clap::{Parser, Subcommand};
use kappa_exchange::generator::FlowConfig;
use kappa_exchange::runtime::broker::{self, BrokerArgs, Ensured};
use kappa_exchange::runtime::embedded::EmbeddedKafka;
use kappa_exchange::runtime::kafka::KafkaArgs;
use kappa_exchange::runtime::shutdown::Shutdown;
use kappa_exchange::serving::{auth, ServeArgs};
use kappa_exchange::topics::{strimzi_topics, TopicLayout};
use kappa_exchange::{access, config, demo, report, simulate, telemetry};
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
    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON", global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant (the demo's settings) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on an embedded Kafka broker (or a real cluster: --brokers): a batch
    /// of orders, a verified summary, then the dashboard and API with live flow until Ctrl-C
    /// (`--no-serve`: exit after the batch).
    Demo {
        #[command(flatten)]
        flow: FlowArgs,
        #[command(flatten)]
        broker: BrokerArgs,
        /// Publishing rate in orders/s of wall-clock time (0 = as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Do not serve the dashboard: run the batch, print the summary and exit.
        #[arg(long)]
        no_serve: bool,
        /// After the batch, keep publishing live flow at this many orders/s until Ctrl-C.
        #[arg(long, default_value_t = 50.0)]
        live_rate: f64,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Manage trader API keys for market-view's --api-keys file.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Host only the embedded Kafka broker (with the standard topics) until Ctrl-C.
    Broker {
        /// Partitions of the orders topic (and of the outputs, except order-events: twice this).
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Topic name prefix.
        #[arg(long, default_value = "")]
        topic_prefix: String,
    },
    /// Write or check the generated contracts in schemas/: the HTTP API's OpenAPI description and
    /// every JSON topic's message schema.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Create (or check), delete or print the pipeline's topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Benchmark the pipeline end to end on the embedded broker or a real cluster (--brokers):
    /// orders/s with verified counts, and the raw pass-through ceiling of the same broker.
    BenchPipeline {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Orders to publish.
        #[arg(long, default_value_t = 300_000)]
        count: usize,
        /// Partitions per topic (order-events: twice this).
        #[arg(long, default_value_t = 8)]
        partitions: i32,
        /// Instruments to trade (the first N of the table).
        #[arg(long, default_value_t = 7)]
        instruments_used: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Match-maker batch size.
        #[arg(long, default_value_t = 5_000)]
        batch_size: usize,
        /// Publish all orders first, then time the match maker alone on the backlog.
        #[arg(long)]
        preload: bool,
        /// Run the match maker without Kafka transactions (idempotent producer only).
        #[arg(long)]
        no_transactions: bool,
    },
    /// Benchmark the match maker's restart after kill -9 for several lengths of history (real
    /// cluster only): restart-to-ready, snapshot size and time per partition.
    BenchRecovery {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Orders of history before the restart, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
        history: Vec<usize>,
        /// Partitions of the orders topic (and the others).
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The match maker's --snapshot-every.
        #[arg(long, default_value_t = 200_000)]
        snapshot_every: u64,
    },
    /// Benchmark FIX order entry: two sessions through a fix-gateway and the match maker
    /// (in-process) on the embedded broker or a cluster; orders/s and order → report latency.
    BenchFix {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Orders sent by each of the two sessions.
        #[arg(long, default_value_t = 20_000)]
        orders: usize,
        /// Orders per second per session.
        #[arg(long, default_value_t = 2_500.0)]
        rate: f64,
        /// Journal without fdatasync (the default syncs each batch, as in production).
        #[arg(long)]
        no_sync: bool,
        /// Run the match maker without Kafka transactions (idempotent producer only).
        #[arg(long)]
        no_transactions: bool,
    },
    /// Benchmark partition parallelism on a real cluster: 1, 2, … match-maker processes in one
    /// consumer group sharing a preloaded `orders`.
    BenchScale {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Orders published before the match makers start.
        #[arg(long, default_value_t = 2_000_000)]
        orders: usize,
        /// Partitions of the orders topic (and the others).
        #[arg(long, default_value_t = 8)]
        partitions: i32,
        /// Match-maker processes, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        instances: Vec<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Benchmark the analytics: Polars computation alone (batch mode) and each job live through
    /// Kafka on the embedded broker or a real cluster (--brokers), with the pass-through ceiling.
    BenchAnalytics {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Trades for the computation-only runs.
        #[arg(long, default_value_t = 3_000_000)]
        trades: usize,
        /// Trades for the live runs (must fit the embedded broker's 5 MiB per partition).
        #[arg(long, default_value_t = 300_000)]
        live_trades: usize,
        /// Partitions of the trades and analytics topics.
        #[arg(long, default_value_t = 32)]
        partitions: i32,
        /// Micro-batch size for the computation-only runs.
        #[arg(long, default_value_t = 1_000_000)]
        batch: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Soak: the whole pipeline as separate processes at a fixed rate for a duration, printing
    /// each job's RSS and consumer lag over time (use --brokers for a real cluster).
    Soak {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Orders per second.
        #[arg(long, default_value_t = 20_000.0)]
        rate: f64,
        /// How long to publish, in minutes.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 30)]
        interval_s: u64,
        /// Partitions of every topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Retention of the soak's topics, in minutes (keeps the broker's disk bounded).
        #[arg(long, default_value_t = 10)]
        retention_min: u64,
        /// Directory of the job binaries (default: beside this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Also write the samples as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Run the matching engine in-process over generated orders and print a market summary.
    Simulate {
        #[command(flatten)]
        flow: FlowArgs,
    },
}

#[derive(Subcommand)]
enum SchemasAction {
    /// Regenerate the files.
    Write {
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
    /// Fail (exit 1) if a committed file differs from what the code generates.
    Check {
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create the topics on a cluster through the Admin API, with their configs; existing topics
    /// are checked and kept, or refused when they cannot work (partition count, cleanup policy,
    /// timestamp type).
    Create {
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Partition counts: production (k8s/topics.yaml) or embedded (the demo's).
        #[arg(long, default_value = "production", value_parser = ["production", "embedded"])]
        layout: String,
        /// Also the side topics of the Airflow DAGs (replay.*, report.*, loadtest.*).
        #[arg(long)]
        side_outputs: bool,
    },
    /// Delete the topics under --topic-prefix (the standard ones and the side outputs).
    Delete {
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Print the Strimzi KafkaTopic resources of the production layout (k8s/topics.yaml).
    K8s,
    /// Print the Strimzi KafkaUser resources: one identity per job with exactly the ACLs its code
    /// needs (k8s/users.yaml).
    Users,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a new key for a trader: the key is printed once (give it to the trader); only its
    /// hash is written, appended to --file (created owner-only), or printed to stderr.
    Add {
        /// The trader the key acts for.
        #[arg(long)]
        trader: String,
        /// Key file to append to (market-view's --api-keys; a Secret in Kubernetes).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Expiry, in days from now (never when unset).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

fn layout_named(name: &str) -> TopicLayout {
    match name {
        "embedded" => TopicLayout::default(),
        _ => TopicLayout::production(),
    }
}

#[derive(clap::Args)]
struct FlowArgs {
    /// Number of generated commands (new, cancel, amend). The demo default fits the embedded
    /// broker's 5 MiB-per-partition retention.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Number of instruments to trade (the first N of the table).
    #[arg(long, default_value_t = 5)]
    instruments_used: usize,
    /// Random seed: the same seed gives the same orders and the same trades.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl FlowArgs {
    fn config(&self) -> FlowConfig {
        FlowConfig {
            count: self.count,
            instruments: self.instruments_used,
            seed: self.seed,
            ..Default::default()
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Demo { .. }
            | Command::BenchPipeline { .. }
            | Command::BenchAnalytics { .. }
            | Command::BenchRecovery { .. }
            | Command::BenchScale { .. }
            | Command::BenchFix { .. }
            | Command::Soak { .. }
    ) && std::env::var_os("RUST_LOG").is_none()
    {
        // The demo prints its own live summary; keep the jobs' logs to warnings.
        std::env::set_var("RUST_LOG", "warn");
    }
    telemetry::init_logging(cli.log_json);
    let instruments = config::load_instruments(cli.instruments.as_deref())?;
    match cli.command {
        Command::Demo {
            flow,
            broker,
            rate,
            no_serve,
            live_rate,
            serve,
        } => {
            let shutdown = Shutdown::on_signals()?;
            let cfg = demo::DemoConfig {
                flow: flow.config(),
                rate,
                serve: (!no_serve).then_some(serve),
                live_rate,
                broker,
            };
            demo::run(&cfg, &instruments, &shutdown)?;
        }
        Command::Broker {
            partitions,
            topic_prefix,
        } => {
            let shutdown = Shutdown::on_signals()?;
            let layout = TopicLayout {
                rejects: partitions.min(2),
                ..TopicLayout::uniform(partitions)
            };
            let broker = EmbeddedKafka::start(&layout.topics(&topic_prefix))?;
            println!("{}", broker.bootstrap());
            eprintln!(
                "embedded Kafka broker at {} (topics: {:?}); Ctrl-C to stop",
                broker.bootstrap(),
                layout.topics(&topic_prefix)
            );
            while !shutdown.is_triggered() {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        Command::Keys {
            action:
                KeysAction::Add {
                    trader,
                    file,
                    expires_in_days,
                },
        } => {
            let expires =
                expires_in_days.map(|d| chrono::Utc::now() + chrono::Duration::days(i64::from(d)));
            let (key, line) = auth::add_key(file.as_deref(), &trader, expires)?;
            if file.is_none() {
                eprintln!("{line}");
            }
            println!("{key}");
        }
        Command::Schemas { action } => match action {
            SchemasAction::Write { dir } => {
                for path in kappa_exchange::schemas::write(&dir)? {
                    println!("wrote {}", path.display());
                }
            }
            SchemasAction::Check { dir } => {
                let stale = kappa_exchange::schemas::stale(&dir);
                if !stale.is_empty() {
                    for path in &stale {
                        eprintln!("stale: {}", path.display());
                    }
                    anyhow::bail!(
                        "{} schema file(s) differ from the code: run `kappa schemas write`",
                        stale.len()
                    );
                }
                println!("schemas in {} match the code", dir.display());
            }
        },
        Command::Topics { action } => match action {
            TopicsAction::Create {
                kafka,
                layout,
                side_outputs,
            } => {
                let layout = layout_named(&layout);
                let mut plan = layout.plan(&kafka.topic_prefix);
                if side_outputs {
                    plan.extend(layout.side_outputs(&kafka.topic_prefix));
                }
                for (name, outcome) in broker::ensure_topics(&kafka, &plan)? {
                    match outcome {
                        Ensured::Created => println!("created {name}"),
                        Ensured::Kept(notes) if notes.is_empty() => println!("exists  {name}"),
                        Ensured::Kept(notes) => println!("exists  {name} ({})", notes.join("; ")),
                    }
                }
            }
            TopicsAction::Delete { kafka } => {
                let layout = TopicLayout::default();
                let names: Vec<String> = layout
                    .plan(&kafka.topic_prefix)
                    .into_iter()
                    .chain(layout.side_outputs(&kafka.topic_prefix))
                    .map(|t| t.name)
                    .collect();
                for name in broker::delete_topics(&kafka, &names)? {
                    println!("deleted {name}");
                }
            }
            TopicsAction::K8s => print!("{}", strimzi_topics(&TopicLayout::production(), "kappa")),
            TopicsAction::Users => print!(
                "{}",
                access::strimzi_users(&access::identities(&instruments), "kappa")
            ),
        },
        Command::BenchPipeline {
            broker,
            count,
            partitions,
            instruments_used,
            seed,
            batch_size,
            preload,
            no_transactions,
        } => {
            let cfg = kappa_exchange::bench::BenchConfig {
                count,
                partitions,
                instruments: instruments_used,
                seed,
                batch_size,
                preload,
                no_transactions,
                broker,
            };
            kappa_exchange::bench::run(&cfg, &instruments)?;
        }
        Command::Soak {
            broker,
            rate,
            minutes,
            interval_s,
            partitions,
            retention_min,
            bin_dir,
            csv,
        } => {
            let cfg = kappa_exchange::soak::SoakConfig {
                broker,
                rate,
                duration: std::time::Duration::from_secs_f64(minutes * 60.0),
                interval: std::time::Duration::from_secs(interval_s.max(1)),
                partitions,
                retention: std::time::Duration::from_secs(retention_min * 60),
                bin_dir,
                csv,
            };
            kappa_exchange::soak::run(&cfg, &Shutdown::on_signals()?)?;
        }
        Command::BenchRecovery {
            broker,
            history,
            partitions,
            seed,
            snapshot_every,
        } => {
            let cfg = kappa_exchange::bench::RecoveryBenchConfig {
                broker,
                histories: history,
                partitions,
                seed,
                snapshot_every,
            };
            kappa_exchange::bench::run_recovery(&cfg, &instruments)?;
        }
        Command::BenchFix {
            broker,
            orders,
            rate,
            no_sync,
            no_transactions,
        } => {
            let cfg = kappa_exchange::bench::FixBenchConfig {
                broker,
                orders,
                rate,
                sync: !no_sync,
                no_transactions,
            };
            kappa_exchange::bench::run_fix(&cfg, &instruments)?;
        }
        Command::BenchScale {
            broker,
            orders,
            partitions,
            instances,
            seed,
        } => {
            let cfg = kappa_exchange::bench::ScaleBenchConfig {
                broker,
                orders,
                partitions,
                instances,
                seed,
            };
            kappa_exchange::bench::run_scale(&cfg, &instruments)?;
        }
        Command::BenchAnalytics {
            broker,
            trades,
            live_trades,
            partitions,
            batch,
            seed,
        } => {
            let cfg = kappa_exchange::bench::AnalyticsBenchConfig {
                trades,
                live_trades,
                partitions,
                batch,
                seed,
                broker,
            };
            kappa_exchange::bench::run_analytics(&cfg, &instruments)?;
        }
        Command::Simulate { flow } => {
            let started = std::time::Instant::now();
            let summary =
                simulate::simulate(&instruments, flow.count, flow.instruments_used, flow.seed);
            print!("{}", report::render(&summary));
            println!("done in {:.2}s", started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
