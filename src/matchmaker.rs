//! The match-maker job: consumes `orders`, runs one engine per assigned partition, and publishes
//! `trades`, `order-events`, `rejects` and (conflated) `book`.
//!
//! The loop, recovery and exactly-once output are [`crate::runtime::processor`]'s; this module is
//! the matching-specific part: parse an order, apply it to the partition's engine, turn events
//! into messages. `book` is a state feed: at most one update per instrument per processed batch,
//! each carrying `(partition, as_of_offset)` so consumers keep the newest — and, after a recovery,
//! the book of every instrument of the partition once more. A partition's state, which its
//! snapshots hold, is its engine: books, orders and the order-id index.

use crate::runtime::harness::{self, InProcess};
use crate::runtime::job::{Emitter, Job, Record};
use crate::runtime::kafka::{create_reader, partition_count, KafkaArgs};
use crate::runtime::metrics::Counters;
use crate::runtime::processor::{self, LoopArgs};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::snapshot;
use crate::topics::{Partitioner, Topics};
use crate::wire::{self, BookMessage, OrderEventMessage};
use anyhow::Context as _;
use kappa_engine::{
    Accepted, DepthUpdate, Engine, EngineConfig, Event, EventBody, Instruments, OrderStatus,
};
use std::time::Duration;

/// Settings of the match maker.
#[derive(Clone, Debug)]
pub struct Options {
    pub group: String,
    /// Most input messages handled per batch (one poll-process-produce round).
    pub batch_size: usize,
    /// Exit once every assigned partition is caught up and nothing arrived for this long.
    pub idle_exit: Option<Duration>,
    /// Depth levels and the duplicate-id window.
    pub engine: EngineConfig,
    /// Transactions and snapshots.
    pub runtime: LoopArgs,
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
            engine: EngineConfig::default(),
            runtime: LoopArgs::default(),
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
    config: EngineConfig,
    /// Partitions of `orders`: an instrument's orders must all arrive on its own partition.
    order_partitions: i32,
    partitioner: Partitioner,
    events: Vec<Event>,
    depth: Vec<DepthUpdate>,
}

impl<'a> MatchMaker<'a> {
    /// The job reading `input` (with `order_partitions` partitions) and writing `outputs`.
    pub fn new(
        instruments: &'a Instruments,
        input: String,
        outputs: Topics,
        order_partitions: i32,
        config: EngineConfig,
    ) -> Self {
        MatchMaker {
            instruments,
            input,
            outputs,
            config,
            order_partitions,
            partitioner: Partitioner::new(instruments),
            events: Vec::with_capacity(256),
            depth: Vec::with_capacity(16),
        }
    }

    fn book(
        &self,
        engine: &Engine,
        id: kappa_engine::InstrumentId,
        out: &Emitter<'_>,
    ) -> BookMessage {
        let depth = engine.depth(id, self.config.depth_levels);
        BookMessage::new(
            id,
            &depth.bids,
            &depth.asks,
            self.instruments,
            out.partition(),
            out.offset(),
            out.event_time(),
        )
    }
}

impl Job for MatchMaker<'_> {
    type State = Engine;

    fn name(&self) -> &'static str {
        "match-maker"
    }

    fn instruments(&self) -> &Instruments {
        self.instruments
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

    fn state_outputs(&self) -> Vec<String> {
        vec![self.outputs.book.clone()]
    }

    fn rejects(&self) -> usize {
        REJECTS
    }

    fn reject_reasons(&self) -> Vec<&'static str> {
        let mut input = crate::wire::ORDER_INPUT_REASONS.to_vec();
        input.push("wrong_partition");
        crate::wire::reasons_with_engine_codes(&input)
    }

    fn new_state(&mut self, _partition: i32) -> Engine {
        Engine::with_config(self.instruments.clone(), self.config)
    }

    fn fingerprint(&self) -> String {
        format!(
            "engine state v{}, depth {}, finished-ids window {}, {} orders partitions, instruments {}",
            kappa_engine::STATE_VERSION,
            self.config.depth_levels,
            self.config.finished_ids_window,
            self.order_partitions,
            crate::config::instruments_fingerprint(self.instruments)
        )
    }

    fn save(&self, _partition: i32, engine: &Engine) -> anyhow::Result<Vec<u8>> {
        snapshot::to_bytes(engine)
    }

    fn load(&mut self, _partition: i32, bytes: &[u8]) -> anyhow::Result<Engine> {
        snapshot::from_bytes(bytes)
    }

    fn handle(
        &mut self,
        engine: &mut Engine,
        m: &Record<'_>,
        out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        let parsed = match wire::parse_order(m.payload) {
            Ok(p) => p,
            Err(e) => return out.reject(m, m.key, e.reason, e.detail),
        };
        // Exchange time: the `orders` record's timestamp (on a real cluster the broker's arrival
        // stamp, `LogAppendTime`), which replays identically. The client's `order_timestamp` is
        // only audit data: a far-future or far-past stamp must never move the outputs' time (the
        // broker would refuse outputs stamped more than an hour ahead, forever, on every replay).
        let ts = out.event_time();
        // One book per instrument: its orders must all come through the partition its key maps
        // to. A producer with another partitioner would otherwise split the book in two.
        let symbol = parsed.command.symbol();
        let home = self
            .partitioner
            .instrument_partition(symbol.as_str(), self.order_partitions);
        if let Some(home) = home.filter(|&home| home != out.partition()) {
            let detail = format!(
                "instrument {symbol} is matched on partition {home} of {} (its position in the instrument table mod {}): produce it there, e.g. kcat -p {home}; GET /instruments lists every instrument's partition",
                m.topic, self.order_partitions
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
        // The fill the next two updates (maker's, taker's) report.
        let mut fill: Option<&kappa_engine::Trade> = None;
        for e in &self.events {
            match &e.body {
                EventBody::Trade(t) => {
                    fill = Some(t);
                    out.count_items(1);
                    // Hand-written: the same bytes as serde_json of `TradeMessage`, without
                    // building it (BENCHMARKS.md, "The codec").
                    let (partition, symbol) = (out.partition(), instruments.symbol(t.instrument));
                    out.emit_with(TRADES, symbol.as_str().as_bytes(), |buf| {
                        wire::write_trade(t, instruments, partition, ts, buf);
                        Ok(())
                    })?;
                }
                EventBody::Order(u) => {
                    let terms = accepted.filter(|a| a.order_id == u.order_id);
                    if terms.is_some() {
                        accepted = None;
                    }
                    // Hand-written like the trades: `OrderEventMessage::from_update` (+ terms)
                    // as serde_json writes it, without building it.
                    let last = fill.filter(|_| {
                        matches!(u.status, OrderStatus::PartiallyFilled | OrderStatus::Filled)
                    });
                    out.emit_with(ORDER_EVENTS, u.trader.as_str().as_bytes(), |buf| {
                        wire::write_order_update(u, terms.as_ref(), last, instruments, ts, buf);
                        Ok(())
                    })?;
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
                        r.command,
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
    fn after_batch(&mut self, engine: &mut Engine, out: &mut Emitter<'_>) -> anyhow::Result<()> {
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

    /// After a recovery, the book of every instrument this partition matches: one that does not
    /// trade again would otherwise keep showing what was published before the restart.
    fn recovered(&mut self, engine: &mut Engine, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        self.depth.clear();
        engine.drain_depth(&mut self.depth);
        for id in self.instruments.ids() {
            let symbol = self.instruments.symbol(id);
            let home = self
                .partitioner
                .instrument_partition(symbol.as_str(), self.order_partitions);
            if home != Some(out.partition()) {
                continue;
            }
            // Unconditionally: this is the republication (the input it reflects was published).
            let msg = self.book(engine, id, out);
            out.emit_once(&self.outputs.book, msg.instrument.as_bytes(), &msg)?;
        }
        Ok(())
    }
}

/// Runs the match maker until `shutdown` (or idle exit).
pub fn run(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    opts: &Options,
    shutdown: &Shutdown,
    counters: &Counters,
) -> anyhow::Result<()> {
    let topics = kafka.topics();
    let outputs = kafka.output_topics(opts.output_prefix.as_deref());
    let reader = create_reader(&kafka.reader()).context("creating metadata client")?;
    let mut job = MatchMaker::new(
        instruments,
        topics.orders.clone(),
        outputs,
        partition_count(&reader, &topics.orders)?,
        opts.engine,
    );
    let changelog = kafka.changelog_topic(opts.output_prefix.as_deref(), job.name());
    let loop_opts = processor::Options {
        batch_size: opts.batch_size,
        idle_exit: opts.idle_exit,
        ..processor::Options::new(&opts.group, changelog, &opts.runtime)
    };
    processor::run(&mut job, kafka, &loop_opts, shutdown, counters)
}

/// The name of the thread [`spawn`] runs the match maker on.
pub const THREAD_NAME: &str = "match-maker";

/// Starts [`run`] on a thread of this process (demo, benchmark).
pub fn spawn(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    opts: Options,
) -> anyhow::Result<InProcess> {
    let (kafka, instruments) = (kafka.clone(), instruments.clone());
    harness::spawn(THREAD_NAME, move |stop, counters| {
        run(&kafka, &instruments, &opts, stop, counters)
    })
}
