//! The match-maker job: consumes `orders`, runs one engine per assigned partition, and publishes
//! `trades`, `order-events`, `rejects` and (conflated) `book`.
//!
//! The loop, recovery and exactly-once output are [`crate::processor`]'s; this module is the
//! matching-specific part: parse an order, apply it to the partition's engine, turn events into
//! messages. `book` is a state feed: at most one update per instrument per processed batch, each
//! carrying `(partition, as_of_offset)` so consumers keep the newest.

use crate::kafka::{partition_count, KafkaArgs};
use crate::processor::{self, Emitter, Job};
use crate::schema::{self, BookMessage, OrderEventMessage, TradeMessage};
use crate::shutdown::Shutdown;
use crate::topics::{partition_for, Topics};
use anyhow::Context as _;
use kappa_engine::{Accepted, DepthUpdate, Engine, EngineConfig, Event, EventBody, Instruments};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use std::time::Duration;

pub use crate::processor::Counters;

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

const TRADES: usize = 0;
const ORDER_EVENTS: usize = 1;
const REJECTS: usize = 2;

/// The matching job.
pub struct MatchMaker<'a> {
    instruments: &'a Instruments,
    input: String,
    outputs: Topics,
    depth_levels: usize,
    /// Partitions of `orders`: an instrument's orders must all arrive on its own partition.
    order_partitions: i32,
    events: Vec<Event>,
    depth: Vec<DepthUpdate>,
}

impl Job for MatchMaker<'_> {
    type State = Engine;

    fn name(&self) -> &'static str {
        "match-maker"
    }

    fn input(&self) -> String {
        self.input.clone()
    }

    fn outputs(&self) -> Vec<String> {
        vec![
            self.outputs.trades.clone(),
            self.outputs.order_events.clone(),
            self.outputs.rejects.clone(),
        ]
    }

    fn rejects(&self) -> usize {
        REJECTS
    }

    fn new_state(&mut self, _partition: i32) -> Engine {
        Engine::with_config(
            self.instruments.clone(),
            EngineConfig {
                depth_levels: self.depth_levels,
            },
        )
    }

    fn handle(
        &mut self,
        engine: &mut Engine,
        m: &BorrowedMessage<'_>,
        out: &mut Emitter<'_, '_>,
    ) -> anyhow::Result<()> {
        let payload = m.payload().unwrap_or(&[]);
        let parsed = match schema::parse_order(payload) {
            Ok(p) => p,
            Err(e) => return out.reject(m, m.key().unwrap_or(&[]), e.reason, e.detail),
        };
        // Exchange time: the `orders` record's timestamp (on a real cluster the broker's arrival
        // stamp, `LogAppendTime`), which replays identically. The client's `order_timestamp` is
        // only audit data: a far-future or far-past stamp must never move the outputs' time (the
        // broker would refuse outputs stamped more than an hour ahead, forever, on every replay).
        let ts = out.event_time();
        // One book per instrument: its orders must all come through the partition its key maps
        // to. A producer with another partitioner would otherwise split the book in two.
        let symbol = parsed.command.symbol();
        let home = partition_for(symbol.as_str().as_bytes(), self.order_partitions);
        if home != out.partition() && self.instruments.id_of(symbol).is_some() {
            let detail = format!(
                "instrument {symbol} is matched on partition {home} of {}: produce with key = instrument and the murmur2 partitioner (kcat: -X partitioner=murmur2_random)",
                m.topic()
            );
            return out.reject(m, symbol.as_str().as_bytes(), "wrong_partition", detail);
        }
        self.events.clear();
        engine.apply_into(&parsed.command, &mut self.events);
        let instruments = self.instruments;
        // `Accepted` is not published on its own: every accepted order gets its first status
        // (NEW, PARTIALLY_FILLED, FILLED or CANCELLED) in the same command, and that event
        // carries the order type and time in force instead.
        let mut accepted: Option<Accepted> = None;
        for e in &self.events {
            match &e.body {
                EventBody::Trade(t) => {
                    out.count_items(1);
                    let msg = TradeMessage::new(t, instruments, out.partition(), ts);
                    out.emit(TRADES, msg.instrument.as_bytes(), &msg)?;
                }
                EventBody::Order(u) => {
                    let mut msg = OrderEventMessage::from_update(u, instruments, ts);
                    if let Some(a) = accepted.filter(|a| a.order_id == u.order_id) {
                        msg.with_terms(&a);
                        accepted = None;
                    }
                    out.emit(ORDER_EVENTS, msg.trader.as_bytes(), &msg)?;
                }
                EventBody::Accepted(a) => accepted = Some(*a),
                EventBody::Rejected(r) => {
                    let detail = format!(
                        "{:?} of order {} rejected: {}",
                        r.command,
                        r.order_id,
                        r.reason.code()
                    );
                    out.reject(m, symbol.as_str().as_bytes(), r.reason.code(), detail)?;
                    let msg = OrderEventMessage::rejected(
                        r.order_id,
                        r.trader,
                        symbol.as_str(),
                        r.reason.code(),
                        ts,
                    );
                    out.emit(ORDER_EVENTS, msg.trader.as_bytes(), &msg)?;
                }
            }
        }
        if let Some(a) = accepted {
            // Not reached with the current engine (an accepted order always gets a status), but
            // an acknowledgement must never be lost.
            let msg = OrderEventMessage::accepted(&a, instruments, ts);
            out.emit(ORDER_EVENTS, msg.trader.as_bytes(), &msg)?;
        }
        Ok(())
    }

    /// Publishes the conflated depth of instruments whose top-N changed in this batch.
    fn after_batch(
        &mut self,
        engine: &mut Engine,
        out: &mut Emitter<'_, '_>,
    ) -> anyhow::Result<()> {
        self.depth.clear();
        engine.drain_depth(&mut self.depth);
        for d in &self.depth {
            let msg = BookMessage::new(
                d.instrument,
                &d.depth.bids,
                &d.depth.asks,
                self.instruments,
                out.partition(),
                out.offset(),
                out.event_time(),
            );
            out.emit_state(&self.outputs.book, msg.instrument.as_bytes(), &msg)?;
        }
        Ok(())
    }
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
    let outputs = kafka.output_topics(opts.output_prefix.as_deref());
    let reader: BaseConsumer = kafka
        .reader()
        .create()
        .context("creating metadata client")?;
    let mut job = MatchMaker {
        instruments,
        input: topics.orders.clone(),
        outputs,
        depth_levels: opts.depth_levels,
        order_partitions: partition_count(&reader, &topics.orders)?,
        events: Vec::with_capacity(256),
        depth: Vec::with_capacity(16),
    };
    let loop_opts = processor::Options {
        group: opts.group.clone(),
        batch_size: opts.batch_size,
        idle_exit: opts.idle_exit,
        until_end: false,
        transactional_id: opts.transactional_id.clone(),
    };
    processor::run(&mut job, kafka, &loop_opts, shutdown, counters)
}

/// Starts [`run`] on a thread of this process (demo, benchmark).
pub fn spawn(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    opts: Options,
) -> anyhow::Result<processor::InProcess> {
    let (kafka, instruments) = (kafka.clone(), instruments.clone());
    processor::spawn("match-maker", move |stop, counters| {
        run(&kafka, &instruments, &opts, stop, counters)
    })
}
