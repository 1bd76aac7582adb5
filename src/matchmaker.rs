//! The match-maker job: consumes `orders`, runs one engine per assigned partition, and publishes
//! `trades`, `order-events`, `rejects` and (conflated) `book`.
//!
//! ## Exactly-once output without broker transactions
//! The engine is deterministic, so an input partition replayed from its first offset produces
//! the same outputs in the same order. Every deterministic output (trades, order events, rejects)
//! carries headers with its input partition/offset and a sequence number counted per input
//! partition. When a partition is assigned (start, restart, rebalance), the job:
//! 1. reads the tails of the output topics to find, for each output partition `q`, the last
//!    sequence number this input partition already published there ([`kafka::last_published`]);
//! 2. replays the input partition from the beginning into a fresh engine, running exactly the
//!    same code as live processing, and drops every output whose sequence number is at or below
//!    the mark for its destination partition;
//! 3. carries on live once past the marks.
//!
//! Outputs from one input partition to one output partition are produced in sequence order by an
//! idempotent producer, so what reached the broker is always a prefix: nothing is lost and
//! nothing is duplicated, on any broker, even after `SIGKILL`. Before a partition is revoked the
//! producer is flushed, so the next owner sees everything this one produced.
//!
//! `book` is a conflated state feed (at most one update per instrument per processed batch), not
//! part of the sequence: it is not published while replaying already-published input, and each
//! update carries `(partition, as_of_offset)` so consumers keep the newest.
//!
//! Kafka transactions (`--transactional-id`) can be switched on for production brokers; the
//! replay mechanism above stays in force either way.

use crate::kafka::{last_published, partition_count, KafkaArgs, Provenance};
use crate::schema::{self, BookMessage, OrderEventMessage, RejectMessage, SourceRef, TradeMessage};
use crate::shutdown::Shutdown;
use crate::topics::{partition_for, HDR_SRC_OFFSET, HDR_SRC_PARTITION};
use anyhow::{anyhow, Context as _};
use kappa_engine::{DepthUpdate, Engine, EngineConfig, Event, EventBody, Instruments};
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

/// Settings of the match maker.
#[derive(Clone, Debug)]
pub struct Options {
    pub group: String,
    /// Most input messages handled per batch (one poll-process-produce round).
    pub batch_size: usize,
    /// Exit once every assigned partition is caught up and nothing arrived for this long.
    pub idle_exit: Option<Duration>,
    pub depth_levels: usize,
    /// Use Kafka transactions with this `transactional.id` (production brokers only).
    pub transactional_id: Option<String>,
    /// Prefix for the output topics only (the input stays `orders` under the Kafka prefix):
    /// e.g. `replay.` to rebuild everything side by side in a new consumer group.
    pub output_prefix: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            group: "match-maker".into(),
            batch_size: 5_000,
            idle_exit: None,
            depth_levels: 5,
            transactional_id: None,
            output_prefix: None,
        }
    }
}

/// Live counters, readable from other threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub consumed: AtomicU64,
    pub rejected: AtomicU64,
    pub trades: AtomicU64,
    pub produced: AtomicU64,
    pub suppressed: AtomicU64,
    pub book_updates: AtomicU64,
    /// Input partitions currently assigned and recovered.
    pub assigned: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
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

/// Deterministic output streams (inside the sequence-number space).
#[derive(Clone, Copy)]
enum Out {
    Trades = 0,
    OrderEvents = 1,
    Rejects = 2,
}

/// State of one assigned input partition.
struct PartitionState {
    partition: i32,
    engine: Engine,
    next_seq: u64,
    /// Last sequence number already on the broker, per output stream and partition.
    published: [Vec<u64>; 3],
    /// Highest input offset reflected in already-published outputs: replay below it is silent.
    replay_until: i64,
    last_offset: i64,
    last_ts: i64,
}

struct Output<'a> {
    producer: &'a BaseProducer<ProduceContext>,
    names: [String; 3],
    partitions: [i32; 3],
    book_topic: String,
    book_partitions: i32,
    instruments: &'a Instruments,
    counters: &'a Counters,
    buf: Vec<u8>,
    /// Partitions of `orders`: an instrument's orders must all arrive on its own partition.
    order_partitions: i32,
}

impl Output<'_> {
    fn send(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        headers: OwnedHeaders,
        ts: i64,
    ) -> anyhow::Result<()> {
        let mut record = BaseRecord::to(topic)
            .partition(partition)
            .payload(&self.buf)
            .headers(headers)
            .timestamp(ts);
        if !key.is_empty() {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    self.producer.poll(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
        Counters::add(&self.counters.produced, 1);
        Ok(())
    }

    /// Publishes one deterministic output unless an earlier run already did.
    fn emit<T: Serialize>(
        &mut self,
        st: &mut PartitionState,
        out: Out,
        key: &[u8],
        msg: &T,
    ) -> anyhow::Result<()> {
        let seq = st.next_seq;
        st.next_seq += 1;
        let n = self.partitions[out as usize];
        let q = if key.is_empty() {
            st.partition % n
        } else {
            partition_for(key, n)
        };
        if seq <= st.published[out as usize][q as usize] {
            Counters::add(&self.counters.suppressed, 1);
            return Ok(());
        }
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, msg)?;
        let headers = Provenance {
            partition: st.partition,
            offset: st.last_offset,
            seq,
        }
        .headers();
        let topic = std::mem::take(&mut self.names[out as usize]);
        let r = self.send(&topic, q, key, headers, st.last_ts);
        self.names[out as usize] = topic;
        r
    }

    fn reject(
        &mut self,
        st: &mut PartitionState,
        topic: &str,
        key: &[u8],
        reason: &str,
        detail: String,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        Counters::add(&self.counters.rejected, 1);
        let msg = RejectMessage {
            reason: reason.to_string(),
            detail,
            payload: String::from_utf8_lossy(payload).into_owned(),
            source: SourceRef {
                topic: topic.to_string(),
                partition: st.partition,
                offset: st.last_offset,
            },
            job: "match-maker".into(),
        };
        self.emit(st, Out::Rejects, key, &msg)
    }

    /// Handles one `orders` message.
    fn process(
        &mut self,
        st: &mut PartitionState,
        m: &BorrowedMessage<'_>,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        st.last_offset = m.offset();
        let payload = m.payload().unwrap_or(&[]);
        let fallback_ts = m.timestamp().to_millis().unwrap_or(st.last_ts);
        let parsed = match schema::parse_order(payload) {
            Ok(p) => p,
            Err(e) => {
                st.last_ts = fallback_ts;
                return self.reject(
                    st,
                    m.topic(),
                    m.key().unwrap_or(&[]),
                    e.reason,
                    e.detail,
                    payload,
                );
            }
        };
        st.last_ts = parsed.event_time_ms.unwrap_or(fallback_ts);
        let ts = st.last_ts;
        // One book per instrument: its orders must all come through the partition its key maps
        // to. A producer with another partitioner would otherwise split the book in two.
        let symbol = parsed.command.symbol();
        let home = partition_for(symbol.as_str().as_bytes(), self.order_partitions);
        if home != st.partition && self.instruments.id_of(symbol).is_some() {
            let detail = format!(
                "instrument {symbol} is matched on partition {home} of {}: produce with key = instrument and the murmur2 partitioner (kcat: -X partitioner=murmur2_random)",
                m.topic()
            );
            return self.reject(
                st,
                m.topic(),
                symbol.as_str().as_bytes(),
                "wrong_partition",
                detail,
                payload,
            );
        }
        events.clear();
        st.engine.apply_into(&parsed.command, events);
        let instruments = self.instruments;
        // `Accepted` is not published on its own: every accepted order gets its first status
        // (NEW, PARTIALLY_FILLED, FILLED or CANCELLED) in the same command, and that event
        // carries the order type and time in force instead.
        let mut accepted: Option<kappa_engine::Accepted> = None;
        for e in events.iter() {
            match &e.body {
                EventBody::Trade(t) => {
                    Counters::add(&self.counters.trades, 1);
                    let msg = TradeMessage::new(t, instruments, st.partition, ts);
                    self.emit(st, Out::Trades, msg.instrument.as_bytes(), &msg)?;
                }
                EventBody::Order(u) => {
                    let mut msg = OrderEventMessage::from_update(u, instruments, ts);
                    if let Some(a) = accepted.filter(|a| a.order_id == u.order_id) {
                        msg.with_terms(&a);
                        accepted = None;
                    }
                    self.emit(st, Out::OrderEvents, msg.trader.as_bytes(), &msg)?;
                }
                EventBody::Accepted(a) => accepted = Some(*a),
                EventBody::Rejected(r) => {
                    let symbol = parsed.command.symbol();
                    let detail = format!(
                        "{:?} of order {} rejected: {}",
                        r.command,
                        r.order_id,
                        r.reason.code()
                    );
                    self.reject(
                        st,
                        m.topic(),
                        symbol.as_str().as_bytes(),
                        r.reason.code(),
                        detail,
                        payload,
                    )?;
                    let msg = OrderEventMessage::rejected(
                        r.order_id,
                        r.trader,
                        symbol.as_str(),
                        r.reason.code(),
                        ts,
                    );
                    self.emit(st, Out::OrderEvents, msg.trader.as_bytes(), &msg)?;
                }
            }
        }
        if let Some(a) = accepted {
            // Not reached with the current engine (an accepted order always gets a status), but
            // an acknowledgement must never be lost.
            let msg = OrderEventMessage::accepted(&a, instruments, ts);
            self.emit(st, Out::OrderEvents, msg.trader.as_bytes(), &msg)?;
        }
        Ok(())
    }

    /// Publishes the conflated depth of instruments whose top-N changed in this batch.
    fn publish_depth(
        &mut self,
        st: &mut PartitionState,
        depth: &mut Vec<DepthUpdate>,
    ) -> anyhow::Result<()> {
        depth.clear();
        st.engine.drain_depth(depth);
        if st.last_offset <= st.replay_until {
            return Ok(()); // replaying input whose outputs are already out
        }
        for d in depth.iter() {
            let msg = BookMessage::new(
                d.instrument,
                &d.depth.bids,
                &d.depth.asks,
                self.instruments,
                st.partition,
                st.last_offset,
                st.last_ts,
            );
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, &msg)?;
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: HDR_SRC_PARTITION,
                    value: Some(st.partition.to_string().as_bytes()),
                })
                .insert(Header {
                    key: HDR_SRC_OFFSET,
                    value: Some(st.last_offset.to_string().as_bytes()),
                });
            let q = partition_for(msg.instrument.as_bytes(), self.book_partitions);
            let topic = std::mem::take(&mut self.book_topic);
            let r = self.send(&topic, q, msg.instrument.as_bytes(), headers, st.last_ts);
            self.book_topic = topic;
            r?;
            Counters::add(&self.counters.book_updates, 1);
        }
        Ok(())
    }
}

/// Builds fresh state for newly assigned `partitions`, with the marks of what is already out.
fn recover(
    reader: &BaseConsumer,
    names: &[String; 3],
    partitions: &[i32; 3],
    assigned: &[i32],
    instruments: &Instruments,
    opts: &Options,
) -> anyhow::Result<Vec<PartitionState>> {
    let started = Instant::now();
    let mut states: Vec<PartitionState> = assigned
        .iter()
        .map(|&p| PartitionState {
            partition: p,
            engine: Engine::with_config(
                instruments.clone(),
                EngineConfig {
                    depth_levels: opts.depth_levels,
                },
            ),
            next_seq: 1,
            published: [0, 1, 2].map(|i| vec![0; partitions[i] as usize]),
            replay_until: -1,
            last_offset: -1,
            last_ts: 0,
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        for ((source, q), last) in last_published(reader, name, assigned)? {
            if let Some(st) = states.iter_mut().find(|s| s.partition == source) {
                st.published[i][q as usize] = last.seq;
                st.replay_until = st.replay_until.max(last.offset);
            }
        }
    }
    for st in &states {
        info!(
            partition = st.partition,
            replay_until = st.replay_until,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered output marks"
        );
    }
    Ok(states)
}

/// Runs the match maker until `shutdown` (or idle exit). Flushes and commits before returning.
pub fn run(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    opts: &Options,
    shutdown: &Shutdown,
    counters: &Counters,
) -> anyhow::Result<()> {
    let topics = kafka.topics();
    let outputs = match &opts.output_prefix {
        Some(prefix) => {
            crate::topics::Topics::with_prefix(&format!("{}{prefix}", kafka.topic_prefix))
        }
        None => topics.clone(),
    };
    let failed = Arc::new(AtomicBool::new(false));
    let mut pcfg = kafka.producer();
    if let Some(id) = &opts.transactional_id {
        pcfg.set("transactional.id", id)
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
    let consumer: BaseConsumer<RebalanceContext> = kafka
        .consumer(&opts.group)
        .create_with_context(ctx)
        .context("creating consumer")?;
    let reader: BaseConsumer = kafka.reader().create().context("creating reader")?;
    let names = [
        outputs.trades.clone(),
        outputs.order_events.clone(),
        outputs.rejects.clone(),
    ];
    let partitions = [
        partition_count(&reader, &names[0])?,
        partition_count(&reader, &names[1])?,
        partition_count(&reader, &names[2])?,
    ];
    let mut out = Output {
        producer: &producer,
        names: names.clone(),
        partitions,
        book_partitions: partition_count(&reader, &outputs.book)?,
        book_topic: outputs.book.clone(),
        instruments,
        counters,
        buf: Vec::with_capacity(512),
        order_partitions: partition_count(&reader, &topics.orders)?,
    };
    consumer
        .subscribe(&[&topics.orders])
        .context("subscribing")?;
    info!(brokers = %kafka.brokers, group = %opts.group, "match maker started");

    let mut states: HashMap<i32, PartitionState> = HashMap::new();
    let mut events = Vec::with_capacity(256);
    let mut depth = Vec::with_capacity(16);
    let mut touched: Vec<i32> = Vec::new();
    let mut last_input = Instant::now();
    let mut in_txn = false;
    while !shutdown.is_triggered() {
        if failed.load(Ordering::SeqCst) {
            return Err(anyhow!(
                "a produce request failed; exiting so a restart can replay"
            ));
        }
        let mut batch = 0;
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
                    Change::Revoked(ps) => ps.iter().for_each(|p| {
                        states.remove(p);
                    }),
                    Change::Assigned(ps) => {
                        for st in recover(&reader, &names, &partitions, &ps, instruments, opts)? {
                            states.insert(st.partition, st);
                        }
                    }
                }
                counters
                    .assigned
                    .store(states.len() as u64, Ordering::Relaxed);
            }
            let m = match msg {
                None => break,
                Some(Err(e)) => {
                    warn!("consumer: {e}");
                    break;
                }
                Some(Ok(m)) => m,
            };
            let Some(st) = states.get_mut(&m.partition()) else {
                continue;
            };
            if m.offset() <= st.last_offset {
                continue;
            }
            if transactional && !in_txn {
                producer.begin_transaction().context("begin transaction")?;
                in_txn = true;
            }
            Counters::add(&counters.consumed, 1);
            out.process(st, &m, &mut events)?;
            if let Err(e) = consumer.store_offset_from_message(&m) {
                warn!("storing offset: {e}");
            }
            if !touched.contains(&st.partition) {
                touched.push(st.partition);
            }
            batch += 1;
        }
        for p in touched.drain(..) {
            if let Some(st) = states.get_mut(&p) {
                out.publish_depth(st, &mut depth)?;
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
        if batch > 0 {
            last_input = Instant::now();
        } else if let Some(idle) = opts.idle_exit {
            let caught_up = !states.is_empty()
                && states.values().all(|st| {
                    let high = consumer
                        .fetch_watermarks(&topics.orders, st.partition, Duration::from_secs(5))
                        .map(|(_, h)| h)
                        .unwrap_or(i64::MAX);
                    st.last_offset + 1 >= high
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
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => warn!("final commit: {e}"),
    }
    info!(
        consumed = Counters::get(&counters.consumed),
        trades = Counters::get(&counters.trades),
        rejected = Counters::get(&counters.rejected),
        produced = Counters::get(&counters.produced),
        suppressed = Counters::get(&counters.suppressed),
        "match maker stopped"
    );
    Ok(())
}

/// A match maker running on a thread of this process (demo, benchmark).
pub struct InProcess {
    pub counters: Arc<Counters>,
    stop: Shutdown,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// True once the match maker has returned (finished or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Asks it to stop, waits, and returns its result.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop.trigger();
        self.thread
            .join()
            .map_err(|_| anyhow!("match maker thread panicked"))?
    }
}

/// Starts [`run`] on a named thread.
pub fn spawn(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    opts: Options,
) -> anyhow::Result<InProcess> {
    let counters = Arc::new(Counters::default());
    let stop = Shutdown::new();
    let (kafka, instruments, c, s) = (
        kafka.clone(),
        instruments.clone(),
        counters.clone(),
        stop.clone(),
    );
    let thread = std::thread::Builder::new()
        .name("match-maker".into())
        .spawn(move || run(&kafka, &instruments, &opts, &s, &c))?;
    Ok(InProcess {
        counters,
        stop,
        thread,
    })
}
