//! `kappa soak`: the whole pipeline as separate processes — order generator, match maker, SMA
//! and profit calculators, market-view — on a broker (a real cluster with `--brokers`) at a fixed
//! rate for a given duration, sampling each job's resident memory (RSS, from `/proc`) and each
//! consumer group's lag (committed offsets against the log end) at a fixed interval. The point is
//! the curve: memory flat and lag bounded after the warm-up, whatever the history.
//!
//! The topics are created under a fresh prefix with a short retention (`--retention-min`), so a
//! long run does not fill the broker's disk; the jobs read far ahead of it.

use crate::runtime::broker::BrokerArgs;
use crate::runtime::kafka::{create_reader, partition_count, watermarks, Reader};
use crate::runtime::shutdown::Shutdown;
use crate::topics::{Cleanup, TopicLayout};
use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    pub broker: BrokerArgs,
    /// Orders per second published by the generator.
    pub rate: f64,
    pub duration: Duration,
    /// Time between samples.
    pub interval: Duration,
    /// Partitions of every topic (twice that for `order-events`).
    pub partitions: i32,
    /// Retention of every non-compacted topic.
    pub retention: Duration,
    /// Where the job binaries are (default: beside this executable).
    pub bin_dir: Option<PathBuf>,
    /// Also write the samples as CSV here.
    pub csv: Option<PathBuf>,
}

/// A job process under observation.
struct Proc {
    /// The job, also its consumer group (before the namespace prefix).
    name: &'static str,
    child: Child,
    /// Its input topic, and a client in its group that reads the committed offsets (market-view
    /// has no group).
    lag_of: Option<(String, BaseConsumer)>,
}

/// One sample of one job.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_mib: f64,
    lag: Option<i64>,
}

/// Resident memory of process `pid` in MiB (VmRSS), if it is alive.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// How far `probe`'s group is behind the end of `topic`, summed over partitions (a partition
/// without a committed offset counts from its start).
fn lag(probe: &BaseConsumer, reader: &Reader, topic: &str) -> anyhow::Result<i64> {
    let n = partition_count(reader, topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(10))
        .with_context(|| format!("committed offsets on {topic}"))?;
    let mut total = 0;
    for p in 0..n {
        let (low, high) = watermarks(reader, topic, p)?;
        let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        total += (high - at.max(low)).max(0);
    }
    Ok(total)
}

fn bin(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the jobs first (cargo build --release) or pass --bin-dir",
            path.display()
        );
    }
    Ok(path)
}

/// Runs the soak; prints a line per sample and a summary.
pub fn run(cfg: &SoakConfig, shutdown: &Shutdown) -> anyhow::Result<()> {
    let dir = match &cfg.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the executable's directory")?
            .to_path_buf(),
    };
    let (broker, prefix) = cfg.broker.open("soak")?;
    let kafka = broker.kafka(&prefix);
    let mut plan = TopicLayout::uniform(cfg.partitions).plan(&prefix);
    for t in &mut plan {
        if t.spec.cleanup == Cleanup::Delete {
            t.retention_ms = cfg.retention.as_millis() as i64;
        }
    }
    broker.create_topics(&plan)?;
    let topics = kafka.topics();
    println!(
        "soak: {} at {}, topics {prefix}*, {:.0} orders/s for {:?}, a sample every {:?}",
        broker.describe(),
        broker.bootstrap(),
        cfg.rate,
        cfg.duration,
        cfg.interval
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let count = (cfg.rate * cfg.duration.as_secs_f64()).ceil() as u64;
    let spawn = |name: &'static str, args: &[String]| -> anyhow::Result<Child> {
        Command::new(bin(&dir, name)?)
            .args(["--brokers", broker.bootstrap()])
            .args(args)
            .env("KAFKA_TOPIC_PREFIX", &prefix)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let bind = s(&["--bind", &format!("127.0.0.1:{port}")]);
    let mut procs = Vec::new();
    for (name, input, args) in [
        ("match-maker", Some(&topics.orders), &[][..]),
        ("sma-calculator", Some(&topics.trades), &[]),
        ("profit-calculator", Some(&topics.trades), &[]),
        ("market-view", None, &bind[..]),
    ] {
        let lag_of = match input {
            Some(topic) => {
                let probe: BaseConsumer = kafka
                    .consumer(name)
                    .create()
                    .context("creating a lag probe")?;
                Some((topic.clone(), probe))
            }
            None => None,
        };
        procs.push(Proc {
            name,
            child: spawn(name, args)?,
            lag_of,
        });
    }
    // Give the consumers time to join before the flow starts.
    std::thread::sleep(Duration::from_secs(5));
    let mut generator = spawn(
        "order-generator",
        &s(&[
            "--rate",
            &cfg.rate.to_string(),
            "--count",
            &count.to_string(),
            "--quiet",
        ]),
    )?;
    let reader = create_reader(&kafka.reader())?;
    let mut csv = match &cfg.csv {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write!(f, "seconds,orders_published")?;
            for p in &procs {
                write!(f, ",{0}_rss_mib,{0}_lag", p.name)?;
            }
            writeln!(f)?;
            Some(f)
        }
        None => None,
    };
    let header: Vec<String> = procs
        .iter()
        .map(|p| format!("{:>22}", format!("{} RSS/lag", p.name)))
        .collect();
    println!("lag in offsets (a transaction's commit marker counts one per partition)");
    println!("{:>7} {:>12} {}", "t (s)", "orders", header.join(" "));
    let started = Instant::now();
    let mut history: Vec<Vec<Sample>> = vec![Vec::new(); procs.len()];
    let mut generator_done = false;
    let deadline = cfg.duration + Duration::from_secs(60);
    let mut next = started + cfg.interval;
    loop {
        while Instant::now() < next && !shutdown.is_triggered() {
            std::thread::sleep(Duration::from_millis(200));
        }
        next += cfg.interval;
        if let Some(status) = generator.try_wait()? {
            if !status.success() {
                bail!("the order generator failed: {status}");
            }
            generator_done = true;
        }
        for p in procs.iter_mut() {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited during the soak: {status}", p.name);
            }
        }
        let published: i64 = (0..partition_count(&reader, &topics.orders)?)
            .map(|q| watermarks(&reader, &topics.orders, q).map(|(_, h)| h))
            .sum::<anyhow::Result<i64>>()?;
        let mut line = Vec::new();
        for (k, p) in procs.iter().enumerate() {
            let sample = Sample {
                rss_mib: rss_mib(p.child.id()).unwrap_or(0.0),
                lag: match &p.lag_of {
                    Some((topic, probe)) => Some(lag(probe, &reader, topic)?),
                    None => None,
                },
            };
            history[k].push(sample);
            line.push(format!(
                "{:>22}",
                format!(
                    "{:.0} MiB / {}",
                    sample.rss_mib,
                    sample.lag.map_or("-".into(), |l| l.to_string())
                )
            ));
        }
        let t = started.elapsed().as_secs();
        println!("{t:>7} {published:>12} {}", line.join(" "));
        if let Some(f) = csv.as_mut() {
            write!(f, "{t},{published}")?;
            for h in &history {
                let s = h.last().copied().unwrap_or_default();
                write!(f, ",{:.1},{}", s.rss_mib, s.lag.unwrap_or(0))?;
            }
            writeln!(f)?;
        }
        // Offsets, not messages: the marker that commits a transaction takes an offset, so a
        // caught-up group reading a transactional topic still shows up to one per partition.
        let caught_up = history.iter().all(|h| {
            h.last()
                .is_some_and(|s| s.lag.unwrap_or(0) <= cfg.partitions as i64)
        });
        if shutdown.is_triggered() || (generator_done && caught_up) || started.elapsed() > deadline
        {
            break;
        }
    }
    let _ = generator.kill();
    for p in procs.iter_mut() {
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    for p in procs.iter_mut() {
        let _ = p.child.wait();
    }
    println!("\nsummary (after the first 10 % of samples, the warm-up):");
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>12}",
        "job", "RSS min", "RSS max", "RSS last", "lag max"
    );
    for (p, h) in procs.iter().zip(&history) {
        let steady = &h[h.len() / 10..];
        let rss = steady.iter().map(|s| s.rss_mib);
        let (min, max) = rss
            .clone()
            .fold((f64::MAX, 0f64), |(a, b), x| (a.min(x), b.max(x)));
        let last = steady.last().map_or(0.0, |s| s.rss_mib);
        let lag = steady.iter().filter_map(|s| s.lag).max();
        println!(
            "{:<18} {:>6.0} MiB {:>6.0} MiB {:>6.0} MiB {:>12}",
            p.name,
            min,
            max,
            last,
            lag.map_or("-".into(), |l| l.to_string())
        );
    }
    Ok(())
}
