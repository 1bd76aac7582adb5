//! Fault injection on a real Apache Kafka: the pipeline's exactly-once promise under `kill -9` of
//! every job, a paused zombie, a crashed broker, expired outputs, truncated input and a changed
//! configuration — each checked against an uninterrupted run, as `read_committed` consumers see it,
//! with the sequence headers audited for gaps and duplicates.
//!
//! Real broker only: the embedded mock neither hides aborted records from `read_committed`
//! consumers nor stores the offsets sent to a transaction, so exactly-once cannot be shown there
//! (its guarantees are the sequence-number replay's, covered by `tests/pipeline.rs`).

mod support;

use kappa_exchange::config;
use kappa_exchange::engine::{Engine, EventBody};
use kappa_exchange::generator;
use kappa_exchange::runtime::broker::Broker;
use kappa_exchange::runtime::kafka::{
    create_reader, partition_count, read_range, read_topic, watermarks, KafkaArgs, Provenance,
};
use kappa_exchange::runtime::shutdown::Shutdown;
use kappa_exchange::topics::{Partitioner, TopicLayout};
use kappa_exchange::wire::{parse_order, BookMessage, TradeMessage};
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const MM: &str = env!("CARGO_BIN_EXE_match-maker");
const SMA: &str = env!("CARGO_BIN_EXE_sma-calculator");
const PNL: &str = env!("CARGO_BIN_EXE_profit-calculator");

/// The fault tests run one at a time: each drives three job processes (one test its own broker)
/// on a 2-core machine, and their timing assumptions (session timeouts, kill moments) need the
/// cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Publishes `items` at `rate` orders/s on a thread.
fn publish_in_background(
    kafka: &KafkaArgs,
    items: Vec<(String, Vec<u8>, i64)>,
    rate: f64,
) -> std::thread::JoinHandle<u64> {
    let kafka = kafka.clone();
    std::thread::spawn(move || {
        let n = items.len() as u64;
        let it = items.into_iter().map(|(k, v, t)| (k, v, Some(t)));
        let partitioner = Partitioner::new(&config::load_instruments(None).unwrap());
        generator::publish(&kafka, &partitioner, it, n, rate, false, &Shutdown::new())
            .unwrap()
            .published
    })
}

/// A job process that can be killed and started again with the same arguments.
struct Restartable {
    bin: &'static str,
    args: Vec<String>,
    child: Child,
}

impl Restartable {
    fn start(p: &Pipeline, bin: &'static str, args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = job(p, bin, &refs);
        Restartable { bin, args, child }
    }

    fn kill_9_and_restart(&mut self, p: &Pipeline) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let refs: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.child = job(p, self.bin, &refs);
    }

    /// Kills it and starts it once more with `extra` arguments; returns the new process.
    fn last_run(mut self, p: &Pipeline, extra: &[&str]) -> Child {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut refs: Vec<&str> = self.args.iter().map(String::as_str).collect();
        refs.extend(extra);
        job(p, self.bin, &refs)
    }
}

/// Deterministic outputs per (output partition, source partition, job): payloads and sequence
/// numbers in offset order, as a read_committed consumer sees them.
type Streams = BTreeMap<(i32, i32, String), Vec<(Vec<u8>, u64)>>;

fn streams(p: &Pipeline, topic: &str) -> (Streams, BTreeSet<Vec<u8>>) {
    let mut seq: Streams = BTreeMap::new();
    let mut other = BTreeSet::new();
    read_topic(&reader(p), &p.topic(topic), |m| {
        let payload = m.payload().unwrap_or(&[]).to_vec();
        match Provenance::of(m) {
            Some(prov) => seq
                .entry((
                    m.partition(),
                    prov.partition,
                    Provenance::job_of(m).unwrap_or_default(),
                ))
                .or_default()
                .push((payload, prov.seq)),
            None => {
                assert!(other.insert(payload), "a state output published twice");
            }
        }
    })
    .unwrap();
    (seq, other)
}

/// Every (source partition, job) sequence of the topic is exactly 1..=n.
fn audit(s: &Streams, topic: &str) {
    let mut per_source: HashMap<(i32, &str), Vec<u64>> = HashMap::new();
    for ((_, source, job), v) in s {
        per_source
            .entry((*source, job))
            .or_default()
            .extend(v.iter().map(|(_, q)| *q));
    }
    for (source, mut seqs) in per_source {
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        let first_bad = seqs.iter().zip(1..=n).position(|(a, b)| *a != b);
        assert!(
            first_bad.is_none(),
            "{topic} from source partition and job {source:?}: gap or duplicate at position {first_bad:?}"
        );
    }
}

/// Compares `topic` with `ref.topic` stream by stream, and audits both.
fn assert_identical(p: &Pipeline, topic: &str) -> usize {
    let (a, a_state) = streams(p, topic);
    let (b, b_state) = streams(p, &format!("ref.{topic}"));
    audit(&a, topic);
    audit(&b, &format!("ref.{topic}"));
    let count = |s: &Streams| s.values().map(Vec::len).sum::<usize>();
    for (k, v) in &b {
        let got = a.get(k).map_or(&[][..], Vec::as_slice);
        let first = got.iter().zip(v).position(|(x, y)| x != y);
        assert!(
            got == v.as_slice(),
            "{topic} partition/source {k:?}: {} outputs, uninterrupted {}; first difference at {first:?}",
            got.len(),
            v.len()
        );
    }
    assert_eq!(count(&a), count(&b), "{topic}: as many outputs");
    assert_eq!(a_state, b_state, "{topic}: the same state outputs");
    count(&a)
}

/// The newest depth per instrument on `topic` (bids and asks only: offsets and times depend on
/// batching).
fn final_books(p: &Pipeline, topic: &str) -> BTreeMap<String, String> {
    let mut newest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    read_topic(&reader(p), &p.topic(topic), |m| {
        let b: BookMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let depth = format!(
            "{}|{}",
            serde_json::to_string(&b.bids).unwrap(),
            serde_json::to_string(&b.asks).unwrap()
        );
        let e = newest
            .entry(b.instrument.clone())
            .or_insert((i64::MIN, String::new()));
        if b.as_of_offset >= e.0 {
            *e = (b.as_of_offset, depth);
        }
    })
    .unwrap();
    newest.into_iter().map(|(k, (_, d))| (k, d)).collect()
}

/// Runs the uninterrupted reference (`ref.` outputs, fresh groups) over the same input, and
/// checks the faulty run's outputs against it.
fn check_against_uninterrupted(p: &Pipeline, analytics: &[&str]) {
    let mut mm = Killed(vec![job(
        p,
        MM,
        &[
            "--group",
            "ref-mm",
            "--output-prefix",
            "ref.",
            "--idle-exit-ms",
            "3000",
        ],
    )]);
    wait(&mut mm.0[0], Duration::from_secs(240));
    let with = |group: &'static str| {
        let mut a: Vec<&str> = analytics.to_vec();
        a.extend([
            "--group",
            group,
            "--output-prefix",
            "ref.",
            "--idle-exit-ms",
            "3000",
        ]);
        a
    };
    let mut jobs = Killed(vec![
        job(p, SMA, &with("ref-sma")),
        job(p, PNL, &with("ref-pnl")),
    ]);
    for c in &mut jobs.0 {
        wait(c, Duration::from_secs(240));
    }
    let trades = assert_identical(p, "trades");
    assert!(trades > 10_000, "{trades} trades");
    assert_identical(p, "order-events");
    assert_identical(p, "rejects");
    let analytics_out = assert_identical(p, "analytics");
    assert!(analytics_out > 500, "{analytics_out} analytics outputs");
    assert_eq!(final_books(p, "book"), final_books(p, "ref.book"));
}

#[test]
fn kafka_kill_9_of_every_job_at_random_points_changes_no_output() {
    let _serial = one_at_a_time();
    let p = start(On::Kafka, TopicLayout::default());
    p.create_topics("ref.", &TopicLayout::default());
    let items = flow(200_000, 77);
    let publisher = publish_in_background(&p.kafka, items, 25_000.0);
    // Small snapshot intervals, so restarts start from snapshots too, not only from offset 0.
    let snap = [
        "--snapshot-every",
        "15000",
        "--snapshot-interval-ms",
        "2000",
    ];
    let analytics = ["--window", "250ms", "--sma", "3,5"];
    let arg = |id: &'static str, rest: &[&'static str]| -> Vec<&'static str> {
        // Supervised processes, as in k8s: static membership with the transactional id.
        let mut v = vec!["--transactional-id", id, "--static-membership"];
        v.extend(rest);
        v.extend(snap);
        v
    };
    let mut mm = Restartable::start(&p, MM, &arg("mm-0", &["--batch-size", "2000"]));
    let mut sma = Restartable::start(&p, SMA, &arg("sma-0", &analytics));
    let mut pnl = Restartable::start(&p, PNL, &arg("pnl-0", &analytics));
    // Five kills of each job while the orders flow, at random moments.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    for k in 0..15 {
        std::thread::sleep(Duration::from_millis(rng.random_range(250..900)));
        match k % 3 {
            0 => mm.kill_9_and_restart(&p),
            1 => sma.kill_9_and_restart(&p),
            _ => pnl.kill_9_and_restart(&p),
        }
    }
    assert_eq!(publisher.join().unwrap(), 200_000);
    // One more kill each, then they finish the input.
    let mut last = Killed(vec![mm.last_run(&p, &["--idle-exit-ms", "3000"])]);
    wait(&mut last.0[0], Duration::from_secs(240));
    let mut last = Killed(vec![
        sma.last_run(&p, &["--idle-exit-ms", "3000"]),
        pnl.last_run(&p, &["--idle-exit-ms", "3000"]),
    ]);
    for c in &mut last.0 {
        wait(c, Duration::from_secs(240));
    }
    check_against_uninterrupted(&p, &analytics);
}

/// Waits until consumer group `group` has committed, on every partition of `topic`, the offset
/// after the last record a read_committed reader sees there: under transactions, everything
/// processed and published.
fn wait_committed_to_end(p: &Pipeline, group: &str, topic: &str, limit: Duration) {
    let offsets = create_reader(p.kafka.reader().set("group.id", p.kafka.group_id(group))).unwrap();
    let r = reader(p);
    let topic = p.topic(topic);
    let n = partition_count(&r, &topic).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        let mut ends = Vec::new();
        for q in 0..n {
            let (low, high) = watermarks(&r, &topic, q).unwrap();
            let mut last = -1;
            read_range(&r, &topic, q, (high - 1000).max(low), high, |m| {
                last = m.offset()
            })
            .unwrap();
            ends.push(last + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for q in 0..n {
            tpl.add_partition(&topic, q);
        }
        let committed = offsets
            .committed_offsets(tpl, Duration::from_secs(30))
            .unwrap();
        let done = committed.elements().iter().all(|e| {
            let end = ends[e.partition() as usize];
            match e.offset() {
                Offset::Offset(c) => c >= end,
                _ => end == 0,
            }
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} never committed the end of {topic}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Trades per instrument from the engine run in-process over `items`.
fn expected_trades(items: &[(String, Vec<u8>, i64)]) -> BTreeMap<String, Vec<TradeKey>> {
    let instruments = config::load_instruments(None).unwrap();
    let mut engine = Engine::new(instruments.clone());
    let mut out: BTreeMap<String, Vec<TradeKey>> = BTreeMap::new();
    for (_, payload, _) in items {
        if let Ok(order) = parse_order(payload) {
            for e in engine.apply(&order.command) {
                if let EventBody::Trade(t) = e.body {
                    let m = TradeMessage::new(&t, &instruments, 0, 0);
                    out.entry(m.instrument.clone()).or_default().push(key(&m));
                }
            }
        }
    }
    out
}

fn topic_trades(p: &Pipeline) -> BTreeMap<String, Vec<TradeKey>> {
    let mut out: BTreeMap<String, Vec<TradeKey>> = BTreeMap::new();
    read_topic(&reader(p), &p.topic("trades"), |m| {
        let t: TradeMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        out.entry(t.instrument.clone()).or_default().push(key(&t));
    })
    .unwrap();
    out
}

fn audit_topic(p: &Pipeline, topic: &str) {
    audit(&streams(p, topic).0, topic);
}

#[test]
fn kafka_a_paused_instance_past_its_session_timeout_publishes_nothing_twice() {
    let _serial = one_at_a_time();
    let p = start(On::Kafka, TopicLayout::default());
    // Enough work that the instance is still busy when paused at its first trades (with 120 000
    // orders and a pause after 2 000 trades, a faster match maker had finished everything first).
    let items = flow(200_000, 78);
    publish(&p, &items);
    let log = std::env::temp_dir().join(format!("kx-zombie-{}.log", std::process::id()));
    let mut zombie = Command::new(MM)
        .args([
            "--brokers",
            p.bootstrap(),
            "--transactional-id",
            "a-0",
            "--batch-size",
            "3000",
        ])
        .args(["--idle-exit-ms", "5000"])
        .env("KAFKA_TOPIC_PREFIX", p.prefix())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Pause it while it works alone on every partition, past the session timeout (6 s); another
    // instance joins meanwhile and takes the partitions over, redoing what was not committed.
    let r = reader(&p);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = (0..4)
            .map(|q| {
                r.fetch_watermarks(&p.topic("trades"), q, Duration::from_secs(5))
                    .unwrap()
                    .1
            })
            .sum();
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no trades");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = zombie.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let other = job(
        &p,
        MM,
        &[
            "--transactional-id",
            "b-0",
            "--batch-size",
            "3000",
            "--idle-exit-ms",
            "5000",
        ],
    );
    let mut procs = Killed(vec![other]);
    std::thread::sleep(Duration::from_secs(10));
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    wait(&mut procs.0[0], Duration::from_secs(180));
    wait(&mut zombie, Duration::from_secs(180));
    assert_same_trades(&topic_trades(&p), &expected_trades(&items));
    for topic in ["trades", "order-events", "rejects"] {
        audit_topic(&p, topic);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    // It was caught mid-transaction (aborted by the broker's fencing when it resumed) or
    // between transactions (its partitions lost with its membership).
    assert!(
        text.contains("aborting the transaction") || text.contains("lost=true"),
        "the paused instance lost its partitions: {}",
        &text[text.len().saturating_sub(3000)..]
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn kafka_every_job_recovers_by_itself_from_a_broker_crash_and_restart() {
    let _serial = one_at_a_time();
    // A broker of its own: this test kills it.
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("kx-crash-{}-{port}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
    let broker_cmd = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(script)
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let pid = std::process::id().to_string();
    let bootstrap = broker_cmd(&[
        "start",
        "--port",
        &port.to_string(),
        "--heap",
        "768m",
        "--ephemeral",
        "--watch-pid",
        &pid,
    ]);
    let broker = Broker::external(&KafkaArgs::new(bootstrap));
    broker
        .create_topics(&TopicLayout::default().plan(""))
        .unwrap();
    broker
        .create_topics(&TopicLayout::default().plan("ref."))
        .unwrap();
    let p = Pipeline {
        kafka: broker.kafka(""),
        broker,
        on: On::Kafka,
    };
    let items = flow(100_000, 79);
    let publisher = publish_in_background(&p.kafka, items.clone(), 10_000.0);
    let analytics = ["--window", "250ms", "--sma", "3,5"];
    let mut jobs = Killed(vec![
        job(&p, MM, &["--transactional-id", "mm-0"]),
        job(
            &p,
            SMA,
            &[&["--transactional-id", "sma-0"][..], &analytics].concat(),
        ),
        job(
            &p,
            PNL,
            &[&["--transactional-id", "pnl-0"][..], &analytics].concat(),
        ),
    ]);
    std::thread::sleep(Duration::from_secs(4));
    broker_cmd(&["kill"]);
    std::thread::sleep(Duration::from_secs(3));
    broker_cmd(&["start", "--keep-data", "--watch-pid", &pid]);
    assert_eq!(publisher.join().unwrap(), 100_000);
    // The jobs, never restarted, catch up with everything.
    let expected = expected_trades(&items);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        for c in &mut jobs.0 {
            assert!(
                c.try_wait().unwrap().is_none(),
                "a job exited: {:?}",
                c.try_wait()
            );
        }
        if topic_trades(&p) == expected {
            break;
        }
        assert!(Instant::now() < deadline, "the trades never caught up");
        std::thread::sleep(Duration::from_secs(2));
    }
    // Let the analytics finish (each has committed every trade), then stop everything.
    for group in ["sma-calculator", "profit-calculator"] {
        wait_committed_to_end(&p, group, "trades", Duration::from_secs(240));
    }
    for c in &mut jobs.0 {
        assert!(Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap()
            .success());
    }
    for c in &mut jobs.0 {
        wait(c, Duration::from_secs(60));
    }
    check_against_uninterrupted(&p, &analytics);
    broker_cmd(&["stop"]);
}

#[test]
fn kafka_expired_outputs_are_not_published_again_after_a_restart() {
    let _serial = one_at_a_time();
    let p = start(On::Kafka, TopicLayout::default());
    publish(&p, &flow(20_000, 80));
    let run = |p: &Pipeline| {
        let mut mm = Killed(vec![match_maker(
            p,
            &["--transactional-id", "mm-0", "--idle-exit-ms", "2000"],
        )]);
        wait(&mut mm.0[0], Duration::from_secs(120));
    };
    run(&p);
    let derived = ["trades", "order-events", "rejects"];
    let ends = |p: &Pipeline| -> Vec<(i64, i64)> {
        let r = reader(p);
        derived
            .iter()
            .flat_map(|t| {
                let t = p.topic(t);
                (0..partition_count(&r, &t).unwrap())
                    .map(|q| r.fetch_watermarks(&t, q, Duration::from_secs(5)).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let before = ends(&p);
    // Retention of one second: the broker deletes every output (its clock, not ours).
    let configs: Vec<AlterConfig<'_>> = derived
        .iter()
        .map(|t| {
            let name: &'static str = Box::leak(p.topic(t).into_boxed_str());
            AlterConfig::new(ResourceSpecifier::Topic(name))
                .set("retention.ms", "1000")
                .set("segment.ms", "1000")
        })
        .collect();
    for r in block_on(admin(&p.kafka).alter_configs(&configs, &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ends(&p).iter().any(|(low, high)| low < high) {
        assert!(
            Instant::now() < deadline,
            "retention never deleted the outputs: {:?}",
            ends(&p)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A restart finds no outputs at all on the topics, and publishes none again.
    run(&p);
    let after: Vec<i64> = ends(&p).into_iter().map(|(_, h)| h).collect();
    let before: Vec<i64> = before.into_iter().map(|(_, h)| h).collect();
    assert_eq!(after, before, "nothing was published again");
    // New input carries on with the next sequence numbers.
    publish(&p, &flow(2_000, 81)[..]);
    run(&p);
    let (s, _) = streams(&p, "order-events");
    for ((_, source, _), v) in &s {
        assert!(
            v.iter().all(|(_, seq)| *seq > 1),
            "source {source} numbering restarted"
        );
    }
}

#[test]
fn kafka_truncated_input_or_another_configuration_is_refused_with_the_way_out() {
    let _serial = one_at_a_time();
    let p = start(On::Kafka, TopicLayout::default());
    publish(&p, &flow(5_000, 82));
    let mut mm = Killed(vec![match_maker(
        &p,
        &["--transactional-id", "mm-0", "--idle-exit-ms", "1500"],
    )]);
    wait(&mut mm.0[0], Duration::from_secs(120));
    let refused = |args: &[&str]| -> String {
        let out = Command::new(MM)
            .args(["--brokers", p.bootstrap()])
            .args(args)
            .env("KAFKA_TOPIC_PREFIX", p.prefix())
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{err}");
        err
    };
    // Another configuration under the same state (depth levels are part of it).
    let err = refused(&[
        "--transactional-id",
        "mm-0",
        "--depth",
        "3",
        "--idle-exit-ms",
        "1500",
    ]);
    assert!(
        err.contains("taken under a different configuration"),
        "{err}"
    );
    assert!(err.contains("--output-prefix"), "names the way out: {err}");

    // Input deleted beyond what the snapshots cover.
    publish(&p, &flow(2_000, 83));
    let r = reader(&p);
    let orders = p.topic("orders");
    let mut tpl = TopicPartitionList::new();
    for q in 0..4 {
        let high = r
            .fetch_watermarks(&orders, q, Duration::from_secs(5))
            .unwrap()
            .1;
        tpl.add_partition_offset(&orders, q, Offset::Offset(high))
            .unwrap();
    }
    block_on(admin(&p.kafka).delete_records(&tpl, &AdminOptions::new())).unwrap();
    let err = refused(&["--transactional-id", "mm-0", "--idle-exit-ms", "1500"]);
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains("input messages it needs are gone"), "{err}");
    // A fresh group has no snapshot: it needs the input from offset 0.
    let err = refused(&["--group", "fresh", "--idle-exit-ms", "1500"]);
    assert!(err.contains("has no snapshot"), "{err}");
    let _ = r.unassign();
}
