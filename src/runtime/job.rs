//! What a streaming job is to the runtime: a [`Job`] turns input [`Record`]s (plain data, no
//! Kafka client types) into outputs through an [`Emitter`], per input partition, with state it
//! can snapshot. The runtime ([`super::processor`]) owns everything else; a job's logic is
//! unit-tested with [`super::harness::Harness`], without a broker.
//!
//! ## Outputs and their sequence numbers
//! Every *deterministic* output (trades, order events, rejects, bars, P&L…) carries its input
//! partition and offset and a sequence number counted per input partition and output topic, and
//! the job's name (several jobs share `analytics` and `rejects`). A job is deterministic per input
//! partition, so replaying the input after a snapshot reproduces the same outputs with the same
//! numbers; the runtime suppresses those already published. *State* outputs (conflated book
//! depth) are outside the sequence space, and republished whole after a recovery.

use super::metrics::Counters;
use crate::topics::Partitioner;
use crate::wire::{RejectMessage, SourceRef};
use serde::Serialize;
use std::collections::HashMap;

/// One input message.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms since the epoch): on `orders`, the exchange's time.
    pub timestamp_ms: i64,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

/// Where an output came from, carried in its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Input partition and offset it was derived from: the record that produced it, or for an
    /// output computed at the end of a batch, the batch's last record (provenance only; an
    /// output's identity is its sequence number).
    pub partition: i32,
    pub offset: i64,
    /// Its sequence number (deterministic outputs only).
    pub seq: Option<u64>,
}

/// Where outputs go: the Kafka producer in production, a vector in tests.
pub trait Sink {
    /// Sends one output.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: &[u8],
        timestamp_ms: i64,
        origin: Origin,
        job: &str,
    ) -> anyhow::Result<()>;
}

/// A consume-process-produce job.
pub trait Job {
    /// Per-input-partition state.
    type State;
    /// Job name: in output headers, rejects, logs, and the changelog topic's name.
    fn name(&self) -> &'static str;
    /// Input topic.
    fn input(&self) -> String;
    /// The instrument table: it decides where instrument-keyed outputs go ([`Partitioner`]).
    fn instruments(&self) -> &kappa_engine::Instruments;
    /// Output topics in the sequence space (deterministic outputs), indexed by position.
    fn outputs(&self) -> Vec<String>;
    /// Topics of state outputs ([`Emitter::emit_state`], [`Emitter::emit_once`]).
    fn state_outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Topic for rejected input, as an index into [`Job::outputs`].
    fn rejects(&self) -> usize;
    /// Every reason code [`Emitter::reject`] can be called with: `kappa_rejects_total` starts
    /// each at 0 (a series that appears at 1 loses its first increment to `rate()`), and a debug
    /// build panics on a reason not listed, so tests keep the list complete.
    fn reject_reasons(&self) -> Vec<&'static str>;
    /// Fresh state for an input partition.
    fn new_state(&mut self, partition: i32) -> Self::State;
    /// Handles one input message.
    fn handle(
        &mut self,
        state: &mut Self::State,
        record: &Record<'_>,
        out: &mut Emitter<'_>,
    ) -> anyhow::Result<()>;
    /// Called after each batch for every partition that received input in it.
    fn after_batch(
        &mut self,
        _state: &mut Self::State,
        _out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// Batch mode: the input is exhausted; emit what is still pending (e.g. open windows).
    fn end_of_input(
        &mut self,
        _state: &mut Self::State,
        _out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// A partition's state has caught up with what was already published (after a restart, a
    /// rebalance or an aborted transaction): republish its state feeds (e.g. the book depth of
    /// every instrument, which would otherwise wait for the instrument's next change).
    fn recovered(
        &mut self,
        _state: &mut Self::State,
        _out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// Partitions were revoked (their state is dropped right after).
    fn revoked(&mut self, _partitions: &[i32]) {}
    /// What the state depends on besides the input — the instrument table, settings that shape
    /// it, the version of its format: a snapshot taken under another fingerprint is refused.
    fn fingerprint(&self) -> String;
    /// Serializes partition `partition`'s state (and whatever job-wide state belongs to it).
    fn save(&self, partition: i32, state: &Self::State) -> anyhow::Result<Vec<u8>>;
    /// Restores what [`Job::save`] wrote.
    fn load(&mut self, partition: i32, bytes: &[u8]) -> anyhow::Result<Self::State>;
}

/// Output topics, with their partition counts: the sequenced ones by index, the rest by name.
#[derive(Clone, Debug, Default)]
pub struct OutputTopics {
    /// Where keyed records go (the instrument table's assignment, murmur2 for other keys).
    pub partitioner: Partitioner,
    pub names: Vec<String>,
    pub partitions: Vec<i32>,
    /// Partition counts of state topics.
    pub state: HashMap<String, i32>,
}

impl OutputTopics {
    fn state_partitions(&self, topic: &str) -> anyhow::Result<i32> {
        self.state
            .get(topic)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("{topic} is not among the job's state outputs"))
    }
}

/// Sequence bookkeeping of one input partition.
#[derive(Clone, Debug)]
pub struct SeqState {
    pub(crate) partition: i32,
    /// Next sequence number, per output topic.
    pub(crate) next_seq: Vec<u64>,
    /// Last sequence number already published, per output topic and partition.
    pub(crate) published: Vec<Vec<u64>>,
    /// Input below this offset has all its outputs published (the committed position under
    /// transactions): its outputs are suppressed whatever their numbers.
    pub(crate) published_below: i64,
    /// Highest input offset reflected in already-published outputs: replay up to it is silent.
    pub(crate) replay_until: i64,
    pub(crate) last_offset: i64,
    pub(crate) last_ts: i64,
    /// The input at `last_offset` is processed for the first time by this process (not a
    /// replay): what the counters count.
    pub(crate) fresh: bool,
}

impl SeqState {
    /// Bookkeeping for partition `partition` with nothing published: numbers start at 1.
    pub fn new(partition: i32, outputs: &OutputTopics) -> Self {
        SeqState {
            partition,
            next_seq: vec![1; outputs.names.len()],
            published: outputs
                .partitions
                .iter()
                .map(|&n| vec![0; n.max(0) as usize])
                .collect(),
            published_below: 0,
            replay_until: -1,
            last_offset: -1,
            last_ts: 0,
            fresh: true,
        }
    }

    /// Whether the input being processed already had its outputs published.
    pub fn replaying(&self) -> bool {
        self.last_offset < self.replay_target()
    }

    /// The first input offset whose outputs were not all published yet: a recovery replays
    /// silently up to here, then goes live.
    pub fn replay_target(&self) -> i64 {
        self.published_below.max(self.replay_until + 1)
    }
}

/// What a job uses to publish, for the input partition it is working on.
pub struct Emitter<'e> {
    pub(crate) sink: &'e mut dyn Sink,
    pub(crate) topics: &'e OutputTopics,
    pub(crate) seq: &'e mut SeqState,
    pub(crate) counters: &'e Counters,
    pub(crate) buf: &'e mut Vec<u8>,
    pub(crate) rejects: usize,
    pub(crate) job: &'static str,
}

impl Emitter<'_> {
    /// Input partition being processed.
    pub fn partition(&self) -> i32 {
        self.seq.partition
    }

    /// Offset of the input message being processed.
    pub fn offset(&self) -> i64 {
        self.seq.last_offset
    }

    /// Event time stamped on outputs (ms since epoch): the input record's timestamp unless the
    /// job sets another (e.g. a window's end).
    pub fn event_time(&self) -> i64 {
        self.seq.last_ts
    }

    /// Sets the event time stamped on the following outputs.
    pub fn set_event_time(&mut self, ts: i64) {
        self.seq.last_ts = ts;
    }

    /// True while replaying input whose outputs were already published.
    pub fn replaying(&self) -> bool {
        self.seq.replaying()
    }

    /// The job's counters.
    pub fn counters(&self) -> &Counters {
        self.counters
    }

    /// Counts `n` job items (trades, bars, P&L rows), unless they come from input this process
    /// already processed before.
    pub fn count_items(&self, n: u64) {
        if self.seq.fresh {
            Counters::add(&self.counters.items, n);
        }
    }

    /// Publishes one deterministic output to output `index` (see [`Job::outputs`]), keyed by
    /// `key` (partition from [`Partitioner`]; empty key = same partition number as the input), unless
    /// it was already published.
    pub fn emit<T: Serialize>(&mut self, index: usize, key: &[u8], msg: &T) -> anyhow::Result<()> {
        self.emit_with(index, key, |buf| {
            serde_json::to_writer(buf, msg).map_err(anyhow::Error::from)
        })
    }

    /// [`Emitter::emit`] of a message that `write` writes into the (reused) buffer itself — a
    /// hand-written encoder of the wire format (e.g. [`crate::wire::write_trade`]); `write` is
    /// not called for an output already published.
    pub fn emit_with(
        &mut self,
        index: usize,
        key: &[u8],
        write: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let seq = self.seq.next_seq[index];
        self.seq.next_seq[index] += 1;
        let n = self.topics.partitions[index];
        let q = if key.is_empty() {
            self.seq.partition % n
        } else {
            self.topics.partitioner.partition(key, n)
        };
        if self.seq.last_offset < self.seq.published_below
            || seq <= self.seq.published[index][q as usize]
        {
            Counters::add(&self.counters.suppressed, 1);
            return Ok(());
        }
        self.buf.clear();
        write(self.buf)?;
        let origin = Origin {
            partition: self.seq.partition,
            offset: self.seq.last_offset,
            seq: Some(seq),
        };
        self.sink.send(
            &self.topics.names[index],
            q,
            key,
            self.buf,
            self.seq.last_ts,
            origin,
            self.job,
        )?;
        Counters::add(&self.counters.produced, 1);
        Ok(())
    }

    /// Publishes rejected input to the job's rejects topic, with the reason and the original
    /// payload.
    pub fn reject(
        &mut self,
        record: &Record<'_>,
        key: &[u8],
        reason: &'static str,
        detail: String,
    ) -> anyhow::Result<()> {
        if self.seq.fresh {
            self.counters.reject(reason);
        }
        let source = SourceRef {
            topic: record.topic.to_string(),
            partition: self.seq.partition,
            offset: self.seq.last_offset,
        };
        let r = RejectMessage::new(reason, &detail, record.payload, source, self.job);
        let index = self.rejects;
        self.emit(index, key, &r)
    }

    /// Publishes a *state* output (outside the sequence space) to `topic`: skipped while
    /// replaying; carries the input partition/offset so consumers keep the newest.
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

    /// Publishes an output outside the sequence space unconditionally, replaying or not (e.g. the
    /// books republished after a recovery, [`Job::recovered`]).
    pub fn emit_once<T: Serialize>(
        &mut self,
        topic: &str,
        key: &[u8],
        msg: &T,
    ) -> anyhow::Result<()> {
        let n = self.topics.state_partitions(topic)?;
        self.buf.clear();
        serde_json::to_writer(&mut *self.buf, msg)?;
        let origin = Origin {
            partition: self.seq.partition,
            offset: self.seq.last_offset,
            seq: None,
        };
        let q = self.topics.partitioner.partition(key, n);
        self.sink
            .send(topic, q, key, self.buf, self.seq.last_ts, origin, self.job)?;
        Counters::add(&self.counters.produced, 1);
        Counters::add(&self.counters.state_updates, 1);
        Ok(())
    }
}
