//! The consume → process → produce loop shared by every streaming job, with exactly-once output
//! by deterministic replay.
//!
//! A job implements [`Job`]: per-partition state and what to do with each input message. This
//! module owns everything else: the consumer group, assignment and revocation, recovery, batching,
//! producing, transactions (opt-in), idle exit, `--until-end` batch mode, graceful shutdown.
//!
//! ## Exactly-once output without broker transactions
//! Jobs are deterministic per input partition, so a partition replayed from its first offset
//! produces the same outputs in the same order. Every deterministic output carries headers with
//! its input partition/offset and a sequence number counted per input partition and output topic
//! (so each output topic's stream only has to be in a canonical order on its own, whatever the
//! batching — e.g. bars in window order and late-trade rejects in arrival order). When a partition
//! is assigned (start, restart, rebalance), the loop:
//! 1. reads the tails of the job's output topics to find, for each output partition, the last
//!    sequence number this input partition already published there ([`kafka::last_published`]);
//! 2. replays the input partition from the beginning into fresh state, running exactly the live
//!    code path, and drops every output at or below the mark for its destination partition;
//! 3. carries on live once past the marks.
//!
//! Outputs from one input partition to one output partition are produced in order by an
//! idempotent producer, so what reached the broker is always a prefix: nothing is lost and nothing
//! is duplicated, on any broker, even after `SIGKILL`. Before a partition is revoked the producer
//! is flushed, so the next owner sees everything this one produced.
//!
//! *State* outputs (conflated book depth, leaderboards) are outside the sequence space: they are
//! not published while replaying input whose outputs are already out.

use crate::kafka::{last_published, partition_count, KafkaArgs, Provenance};
use crate::schema::{RejectMessage, SourceRef};
use crate::shutdown::Shutdown;
use crate::topics::{partition_for, HDR_SRC_OFFSET, HDR_SRC_PARTITION};
use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct Options {
    pub group: String,
    /// Most input messages handled per batch (one poll-process-produce round).
    pub batch_size: usize,
    /// Exit once every assigned partition is caught up and nothing arrived for this long.
    pub idle_exit: Option<Duration>,
    /// Batch mode: stop at the end offsets seen when the partitions were assigned, call
    /// [`Job::end_of_input`], flush and exit.
    pub until_end: bool,
    /// Use Kafka transactions with this `transactional.id` (production brokers only).
    pub transactional_id: Option<String>,
}

impl Options {
    pub fn new(group: impl Into<String>) -> Self {
        Options {
            group: group.into(),
            batch_size: 5_000,
            idle_exit: None,
            until_end: false,
            transactional_id: None,
        }
    }
}

/// Live counters, readable from other threads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Input messages processed, each offset once per process (see `replayed`).
    pub consumed: AtomicU64,
    /// Input messages processed again: the replay that rebuilds a partition's state after it
    /// was assigned to this process once more (a rebalance).
    pub replayed: AtomicU64,
    pub rejected: AtomicU64,
    pub produced: AtomicU64,
    pub suppressed: AtomicU64,
    /// Job-specific count (trades for the match maker, bars for the SMA calculator, …).
    pub items: AtomicU64,
    pub state_updates: AtomicU64,
    /// Input partitions currently assigned and recovered.
    pub assigned: AtomicU64,
    /// Health and readiness, lag, and the batch latency histogram (for `/metrics`).
    pub ops: crate::ops::LoopStatus,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A consume-process-produce job.
pub trait Job {
    /// Per-input-partition state.
    type State;
    /// Job name, used in rejects and logs.
    fn name(&self) -> &'static str;
    /// Input topic.
    fn input(&self) -> String;
    /// Output topics in the sequence space (deterministic outputs), indexed by position.
    fn outputs(&self) -> Vec<String>;
    /// Topic for rejected input, as an index into [`Job::outputs`].
    fn rejects(&self) -> usize;
    /// Fresh state for an input partition.
    fn new_state(&mut self, partition: i32) -> Self::State;
    /// Handles one input message.
    fn handle(
        &mut self,
        state: &mut Self::State,
        msg: &BorrowedMessage<'_>,
        out: &mut Emitter<'_, '_>,
    ) -> anyhow::Result<()>;
    /// Called after each batch for every partition that received input in it.
    fn after_batch(
        &mut self,
        _state: &mut Self::State,
        _out: &mut Emitter<'_, '_>,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// Batch mode: the input is exhausted; emit what is still pending (e.g. open windows).
    fn end_of_input(
        &mut self,
        _state: &mut Self::State,
        _out: &mut Emitter<'_, '_>,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// Partitions were revoked (their state is dropped right after).
    fn revoked(&mut self, _partitions: &[i32]) {}
}

struct ProduceContext {
    failed: Arc<AtomicBool>,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            // A lost output can only be healed by replay: stop, and let the restart recover.
            error!(
                topic = m.topic(),
                partition = m.partition(),
                "delivery failed: {e}"
            );
            self.failed.store(true, Ordering::SeqCst);
        }
    }
}

enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

struct RebalanceContext {
    producer: Arc<BaseProducer<ProduceContext>>,
    changes: Mutex<Vec<Change>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Always rebuild from the first retained offset; committed offsets only feed lag.
                if let Err(e) = tpl.set_all_offsets(Offset::Beginning) {
                    error!("setting offsets: {e}");
                }
                if let Err(e) = consumer.assign(tpl) {
                    error!("assign failed: {e}");
                }
                info!(?partitions, "partitions assigned");
                self.changes
                    .lock()
                    .expect("lock")
                    .push(Change::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Everything produced for these partitions must be on the broker before the next
                // owner reads the output tails.
                if let Err(e) = self.producer.flush(Duration::from_secs(60)) {
                    error!("flush before revoke failed: {e}");
                }
                info!(?partitions, "partitions revoked");
                self.changes
                    .lock()
                    .expect("lock")
                    .push(Change::Revoked(partitions));
                if let Err(e) = consumer.unassign() {
                    error!("unassign failed: {e}");
                }
            }
            other => {
                error!("rebalance error: {other:?}");
                let _ = consumer.unassign();
            }
        }
    }
}

/// Sequence bookkeeping of one input partition.
pub struct SeqState {
    partition: i32,
    /// Next sequence number, per output topic.
    next_seq: Vec<u64>,
    /// Last sequence number already on the broker, per output topic and partition.
    published: Vec<Vec<u64>>,
    /// Highest input offset reflected in already-published outputs: replay below it is silent.
    replay_until: i64,
    last_offset: i64,
    last_ts: i64,
    /// `until_end`: the end offset seen at assignment.
    end_offset: i64,
    /// The input at `last_offset` is processed for the first time by this process (not a replay
    /// after a reassignment): what the counters count.
    fresh: bool,
}

/// Output resources shared by all partitions.
struct Shared<'a> {
    producer: &'a BaseProducer<ProduceContext>,
    names: Vec<String>,
    partitions: Vec<i32>,
    /// Partition counts of state topics, looked up on first use.
    state_partitions: HashMap<String, i32>,
    reader: &'a BaseConsumer,
    counters: &'a Counters,
    buf: Vec<u8>,
    rejects: usize,
    job: &'static str,
}

/// What a job uses to publish, for the input partition it is working on.
pub struct Emitter<'e, 's> {
    shared: &'e mut Shared<'s>,
    seq: &'e mut SeqState,
}

impl Emitter<'_, '_> {
    /// Input partition being processed.
    pub fn partition(&self) -> i32 {
        self.seq.partition
    }

    /// Offset of the input message being processed.
    pub fn offset(&self) -> i64 {
        self.seq.last_offset
    }

    /// Event time stamped on outputs (ms since epoch).
    pub fn event_time(&self) -> i64 {
        self.seq.last_ts
    }

    /// Sets the event time stamped on the following outputs.
    pub fn set_event_time(&mut self, ts: i64) {
        self.seq.last_ts = ts;
    }

    /// True while replaying input whose outputs were already published before a restart.
    pub fn replaying(&self) -> bool {
        self.seq.last_offset <= self.seq.replay_until
    }

    /// The job's counters.
    pub fn counters(&self) -> &Counters {
        self.shared.counters
    }

    /// Counts `n` job items (trades, bars, P&L rows), unless they come from input this process
    /// already processed before a reassignment.
    pub fn count_items(&self, n: u64) {
        if self.seq.fresh {
            Counters::add(&self.shared.counters.items, n);
        }
    }

    fn send(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        headers: OwnedHeaders,
    ) -> anyhow::Result<()> {
        let sh = &mut *self.shared;
        let mut record = BaseRecord::to(topic)
            .partition(partition)
            .payload(&sh.buf)
            .headers(headers)
            .timestamp(self.seq.last_ts);
        if !key.is_empty() {
            record = record.key(key);
        }
        loop {
            match sh.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    sh.producer.poll(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
        Counters::add(&sh.counters.produced, 1);
        Ok(())
    }

    /// Publishes one deterministic output to output `index` (see [`Job::outputs`]), keyed by
    /// `key` (partition = murmur2(key); empty key = same partition number as the input), unless
    /// an earlier run already published it.
    pub fn emit<T: Serialize>(&mut self, index: usize, key: &[u8], msg: &T) -> anyhow::Result<()> {
        let seq = self.seq.next_seq[index];
        self.seq.next_seq[index] += 1;
        let n = self.shared.partitions[index];
        let q = if key.is_empty() {
            self.seq.partition % n
        } else {
            partition_for(key, n)
        };
        if seq <= self.seq.published[index][q as usize] {
            Counters::add(&self.shared.counters.suppressed, 1);
            return Ok(());
        }
        self.shared.buf.clear();
        serde_json::to_writer(&mut self.shared.buf, msg)?;
        let headers = Provenance {
            partition: self.seq.partition,
            offset: self.seq.last_offset,
            seq,
        }
        .headers(self.shared.job);
        let topic = std::mem::take(&mut self.shared.names[index]);
        let r = self.send(&topic, q, key, headers);
        self.shared.names[index] = topic;
        r
    }

    /// Publishes rejected input to the job's rejects topic, with the reason and the original
    /// payload.
    pub fn reject(
        &mut self,
        msg: &BorrowedMessage<'_>,
        key: &[u8],
        reason: &str,
        detail: String,
    ) -> anyhow::Result<()> {
        if self.seq.fresh {
            Counters::add(&self.shared.counters.rejected, 1);
        }
        let payload = msg.payload().unwrap_or(&[]);
        let r = RejectMessage {
            reason: reason.to_string(),
            detail,
            payload: String::from_utf8_lossy(payload).into_owned(),
            source: SourceRef {
                topic: msg.topic().to_string(),
                partition: self.seq.partition,
                offset: self.seq.last_offset,
            },
            job: self.shared.job.to_string(),
        };
        let index = self.shared.rejects;
        self.emit(index, key, &r)
    }

    /// Publishes a *state* output (outside the sequence space) to `topic`: skipped while
    /// replaying; carries the input partition/offset headers so consumers keep the newest.
    pub fn emit_state<T: Serialize>(
        &mut self,
        topic: &str,
        key: &[u8],
        msg: &T,
    ) -> anyhow::Result<()> {
        if self.replaying() {
            return Ok(());
        }
        self.emit_once(topic, key, msg)
    }

    /// Publishes an output outside the sequence space unconditionally: the job itself makes sure
    /// it is published once (e.g. leaderboards, deduplicated by window).
    pub fn emit_once<T: Serialize>(
        &mut self,
        topic: &str,
        key: &[u8],
        msg: &T,
    ) -> anyhow::Result<()> {
        let n = match self.shared.state_partitions.get(topic) {
            Some(&n) => n,
            None => {
                let n = partition_count(self.shared.reader, topic)?;
                self.shared.state_partitions.insert(topic.to_string(), n);
                n
            }
        };
        self.shared.buf.clear();
        serde_json::to_writer(&mut self.shared.buf, msg)?;
        let (mut p, mut o) = (itoa::Buffer::new(), itoa::Buffer::new());
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: HDR_SRC_PARTITION,
                value: Some(p.format(self.seq.partition)),
            })
            .insert(Header {
                key: HDR_SRC_OFFSET,
                value: Some(o.format(self.seq.last_offset)),
            });
        let q = partition_for(key, n);
        self.send(topic, q, key, headers)?;
        Counters::add(&self.shared.counters.state_updates, 1);
        Ok(())
    }
}

struct Slot<S> {
    seq: SeqState,
    state: S,
}

/// Builds fresh state for newly assigned `partitions`, with the marks of what is already out.
fn recover<J: Job>(
    job: &mut J,
    shared: &Shared<'_>,
    consumer: &BaseConsumer<RebalanceContext>,
    input: &str,
    assigned: &[i32],
    until_end: bool,
) -> anyhow::Result<Vec<Slot<J::State>>> {
    let started = Instant::now();
    let mut slots: Vec<Slot<J::State>> = Vec::with_capacity(assigned.len());
    for &p in assigned {
        let end_offset = if until_end {
            crate::kafka::watermarks(consumer, input, p)?.1
        } else {
            i64::MAX
        };
        slots.push(Slot {
            seq: SeqState {
                partition: p,
                next_seq: vec![1; shared.partitions.len()],
                published: shared
                    .partitions
                    .iter()
                    .map(|&n| vec![0; n as usize])
                    .collect(),
                replay_until: -1,
                last_offset: -1,
                last_ts: 0,
                end_offset,
                fresh: true,
            },
            state: job.new_state(p),
        });
    }
    for (i, name) in shared.names.iter().enumerate() {
        for ((source, q), last) in last_published(shared.reader, name, shared.job, assigned)? {
            if let Some(slot) = slots.iter_mut().find(|s| s.seq.partition == source) {
                slot.seq.published[i][q as usize] = last.seq;
                slot.seq.replay_until = slot.seq.replay_until.max(last.offset);
            }
        }
    }
    for s in &slots {
        info!(
            partition = s.seq.partition,
            replay_until = s.seq.replay_until,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered output marks"
        );
    }
    Ok(slots)
}

/// Runs `job` until `shutdown`, idle exit or (batch mode) the end of the input. Flushes and
/// commits before returning.
pub fn run<J: Job>(
    job: &mut J,
    kafka: &KafkaArgs,
    opts: &Options,
    shutdown: &Shutdown,
    counters: &Counters,
) -> anyhow::Result<()> {
    let input = job.input();
    let failed = Arc::new(AtomicBool::new(false));
    let mut pcfg = kafka.producer();
    if let Some(id) = &opts.transactional_id {
        pcfg.set("transactional.id", kafka.transactional_id(id))
            .set("transaction.timeout.ms", "120000");
    }
    let producer: Arc<BaseProducer<ProduceContext>> = Arc::new(
        pcfg.create_with_context(ProduceContext {
            failed: failed.clone(),
        })
        .context("creating producer")?,
    );
    let transactional = opts.transactional_id.is_some();
    if transactional {
        producer
            .init_transactions(Duration::from_secs(30))
            .context("init transactions")?;
    }
    let ctx = RebalanceContext {
        producer: producer.clone(),
        changes: Mutex::default(),
    };
    let mut ccfg = kafka.consumer(&opts.group);
    if transactional {
        // Offsets are committed inside each transaction, never on their own.
        ccfg.set("enable.auto.commit", "false");
    }
    let consumer: BaseConsumer<RebalanceContext> =
        ccfg.create_with_context(ctx).context("creating consumer")?;
    let reader: BaseConsumer = kafka.reader().create().context("creating reader")?;
    let names = job.outputs();
    let partitions = names
        .iter()
        .map(|n| partition_count(&reader, n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    partition_count(&reader, &input)?;
    let mut shared = Shared {
        producer: &producer,
        names,
        partitions,
        state_partitions: HashMap::new(),
        reader: &reader,
        counters,
        buf: Vec::with_capacity(512),
        rejects: job.rejects(),
        job: job.name(),
    };
    consumer.subscribe(&[&input]).context("subscribing")?;
    info!(brokers = %kafka.brokers, group = %opts.group, job = job.name(), "started");

    let mut slots: HashMap<i32, Slot<J::State>> = HashMap::new();
    // Per input partition, the highest offset this process has processed (kept across
    // reassignments, so the counters count each input once).
    let mut counted: HashMap<i32, i64> = HashMap::new();
    let mut touched: Vec<i32> = Vec::new();
    let mut last_input = Instant::now();
    let mut in_txn = false;
    let mut ever_assigned = false;
    while !shutdown.is_triggered() {
        if failed.load(Ordering::SeqCst) {
            return Err(anyhow!(
                "a produce request failed; exiting so a restart can replay"
            ));
        }
        counters.ops.polled();
        let mut batch = 0;
        let mut batch_started: Option<Instant> = None;
        while batch < opts.batch_size {
            let timeout = if batch == 0 {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            let msg = consumer.poll(timeout);
            let changes = std::mem::take(&mut *consumer.context().changes.lock().expect("lock"));
            for change in changes {
                match change {
                    Change::Revoked(ps) => {
                        job.revoked(&ps);
                        ps.iter().for_each(|p| {
                            slots.remove(p);
                        });
                    }
                    Change::Assigned(ps) => {
                        ever_assigned = true;
                        for s in recover(job, &shared, &consumer, &input, &ps, opts.until_end)? {
                            slots.insert(s.seq.partition, s);
                        }
                    }
                }
                counters
                    .assigned
                    .store(slots.len() as u64, Ordering::Relaxed);
            }
            let m = match msg {
                None => break,
                Some(Err(e)) => {
                    warn!("consumer: {e}");
                    break;
                }
                Some(Ok(m)) => m,
            };
            let Some(slot) = slots.get_mut(&m.partition()) else {
                continue;
            };
            if m.offset() <= slot.seq.last_offset || m.offset() >= slot.seq.end_offset {
                continue;
            }
            batch_started.get_or_insert_with(Instant::now);
            if transactional && !in_txn {
                producer.begin_transaction().context("begin transaction")?;
                in_txn = true;
            }
            let high = counted.entry(m.partition()).or_insert(-1);
            slot.seq.fresh = m.offset() > *high;
            if slot.seq.fresh {
                *high = m.offset();
                Counters::add(&counters.consumed, 1);
            } else {
                Counters::add(&counters.replayed, 1);
            }
            slot.seq.last_offset = m.offset();
            slot.seq.last_ts = m.timestamp().to_millis().unwrap_or(slot.seq.last_ts);
            {
                let mut out = Emitter {
                    shared: &mut shared,
                    seq: &mut slot.seq,
                };
                job.handle(&mut slot.state, &m, &mut out)?;
            }
            if let Err(e) = consumer.store_offset_from_message(&m) {
                warn!("storing offset: {e}");
            }
            if !touched.contains(&slot.seq.partition) {
                touched.push(slot.seq.partition);
            }
            batch += 1;
        }
        for p in touched.drain(..) {
            if let Some(slot) = slots.get_mut(&p) {
                let mut out = Emitter {
                    shared: &mut shared,
                    seq: &mut slot.seq,
                };
                job.after_batch(&mut slot.state, &mut out)?;
            }
        }
        let input_done = opts.until_end
            && ever_assigned
            && !slots.is_empty()
            && slots
                .values()
                .all(|s| s.seq.last_offset + 1 >= s.seq.end_offset);
        if input_done {
            if transactional && !in_txn {
                producer.begin_transaction().context("begin transaction")?;
                in_txn = true;
            }
            let mut ps: Vec<i32> = slots.keys().copied().collect();
            ps.sort_unstable();
            for p in ps {
                let slot = slots.get_mut(&p).expect("present");
                let mut out = Emitter {
                    shared: &mut shared,
                    seq: &mut slot.seq,
                };
                job.end_of_input(&mut slot.state, &mut out)?;
            }
        }
        if in_txn {
            let position = consumer.position()?;
            if let Some(meta) = consumer.group_metadata() {
                producer.send_offsets_to_transaction(&position, &meta, Duration::from_secs(30))?;
            }
            producer
                .commit_transaction(Duration::from_secs(60))
                .context("commit transaction")?;
            in_txn = false;
        }
        producer.poll(Duration::ZERO);
        if let Some(t) = batch_started {
            counters
                .ops
                .batch_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        counters.ops.set_ready(
            ever_assigned
                && slots
                    .values()
                    .all(|s| s.seq.last_offset >= s.seq.replay_until),
        );
        if counters.ops.lag_due() {
            let lag = slots
                .values()
                .filter_map(|s| {
                    let (_, high) = consumer
                        .fetch_watermarks(&input, s.seq.partition, Duration::from_millis(500))
                        .ok()?;
                    Some((s.seq.partition, (high - s.seq.last_offset - 1).max(0)))
                })
                .collect();
            counters.ops.set_lag(&input, lag);
        }
        if input_done {
            info!("reached the end offsets seen at start; exiting");
            break;
        }
        if batch > 0 {
            last_input = Instant::now();
        } else if let Some(idle) = opts.idle_exit {
            let caught_up = !slots.is_empty()
                && slots.values().all(|s| {
                    let high = consumer
                        .fetch_watermarks(&input, s.seq.partition, Duration::from_secs(5))
                        .map(|(_, h)| h)
                        .unwrap_or(i64::MAX);
                    s.seq.last_offset + 1 >= high
                });
            if caught_up && last_input.elapsed() >= idle {
                info!("caught up and idle; exiting");
                break;
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("final flush")?;
    if failed.load(Ordering::SeqCst) {
        return Err(anyhow!(
            "a produce request failed; exiting so a restart can replay"
        ));
    }
    // Under transactions every batch's offsets were committed with its outputs.
    if !transactional {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => warn!("final commit: {e}"),
        }
    }
    info!(
        job = job.name(),
        consumed = Counters::get(&counters.consumed),
        items = Counters::get(&counters.items),
        rejected = Counters::get(&counters.rejected),
        produced = Counters::get(&counters.produced),
        suppressed = Counters::get(&counters.suppressed),
        "stopped"
    );
    Ok(())
}

/// A job running on a thread of this process (demo, benchmarks).
pub struct InProcess {
    pub counters: Arc<Counters>,
    stop: Shutdown,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// True once the job has returned (finished or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Polls every `every` until `done(counters)` holds. Gives up when the job has returned or
    /// `deadline` has passed; returns whether the condition held.
    pub fn wait_until(
        &self,
        deadline: Instant,
        every: Duration,
        done: impl Fn(&Counters) -> bool,
    ) -> bool {
        loop {
            if done(&self.counters) {
                return true;
            }
            if self.is_finished() || Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(every);
        }
    }

    /// Asks it to stop, waits, and returns its result.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop.trigger();
        self.thread
            .join()
            .map_err(|_| anyhow!("job thread panicked"))?
    }
}

/// Runs `job(stop, counters)` on a named thread.
pub fn spawn(
    name: &str,
    job: impl FnOnce(&Shutdown, &Counters) -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<InProcess> {
    let counters = Arc::new(Counters::default());
    let stop = Shutdown::new();
    let (c, s) = (counters.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || job(&s, &c))?;
    Ok(InProcess {
        counters,
        stop,
        thread,
    })
}
