//! The consume → process → produce loop shared by every streaming job: exactly-once output with
//! bounded recovery.
//!
//! A job implements [`Job`] (per-partition state, what to do with each input record, how to save
//! and load its state). This module owns the rest: the consumer group (cooperative-sticky: a
//! rebalance leaves the partitions that stay untouched), recovery, batching, producing, Kafka
//! transactions, snapshots, idle exit, `--until-end` batch mode, graceful shutdown.
//!
//! ## Recovery
//! When a partition is assigned (start, restart, rebalance) or must be rebuilt (an aborted
//! transaction), the loop:
//! 1. loads the partition's latest snapshot from the job's changelog topic ([`snapshot`]) — or
//!    starts from offset 0 with fresh state when there is none — and **refuses** to go on when the
//!    snapshot's fingerprint differs from the job's (another instrument table, other settings, an
//!    incompatible state format) or when the input no longer starts at or before the snapshot's
//!    offset (retention or delete-records removed input the state needs);
//! 2. learns what was already published: under transactions, the group's committed offset and
//!    the output sequence counters committed with it as its metadata (both atomically with the
//!    outputs); otherwise (no transactions, or the mock broker, which does not store transaction
//!    offsets) the last sequence numbers found in the tails of the output topics, scanned per input
//!    partition no further back than its snapshot's recorded positions;
//! 3. replays the input from the snapshot's offset through the live code path, suppressing every
//!    output already published; once past that point, republishes its state feeds
//!    ([`Job::recovered`]) and carries on live.
//!
//! Recovery costs at most one snapshot interval of input (`--snapshot-every`,
//! `--snapshot-interval`), whatever the history.
//!
//! ## Transactions (EOS v2, the default)
//! One transactional producer per process. A batch's outputs, the snapshots taken after it and
//! the input offsets it reached (sent with the consumer's group metadata, so a zombie from an older
//! group generation is fenced by the broker) commit in one transaction; consumers read with
//! `read_committed`. The loop never polls while a transaction is open, so a rebalance always finds
//! everything committed. An abortable failure (a broker restart, a fenced generation, a delivery
//! timeout) aborts the transaction and rebuilds the state of every assigned partition from its
//! snapshot; a fatal one (another process took over the transactional id) stops the job.
//!
//! Without transactions (`--no-transactions`) the producer is idempotent and gapless: what reached
//! the broker from one input partition to one output partition is always a prefix, and the
//! sequence numbers in the output tails say where each stream stopped. The embedded mock broker
//! accepts transactions but does not store the offsets sent with them nor hide aborted records:
//! there, recovery rests on those sequence numbers (step 2), which holds as long as the derived
//! topics keep their tails.

use super::job::{Emitter, Job, Origin, OutputTopics, Record, SeqState, Sink};
use super::kafka::{
    create_reader, flush, last_published, partition_count, watermarks, KafkaArgs, Provenance,
    Reader,
};
use super::metrics::Counters;
use super::shutdown::Shutdown;
use super::snapshot::{self, Loaded, Manifest, Prepared};
use anyhow::{anyhow, bail, Context as _};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Command-line settings of the loop that every streaming job shares.
#[derive(clap::Args, Clone, Debug)]
pub struct LoopArgs {
    /// Kafka transactional.id of this process (EOS v2; default `<group>-<hostname>-<pid>-<n>`, n
    /// counting the loops of this process). Give a restarted process the same id to fence its
    /// predecessor at once (a pod's name is stable across container restarts); otherwise a
    /// predecessor's open transaction holds its partitions back until it times out (30 s).
    #[arg(long, env = "KAPPA_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// Produce without transactions (idempotent producer; recovery from the output topics'
    /// sequence numbers alone).
    #[arg(long, env = "KAPPA_NO_TRANSACTIONS")]
    pub no_transactions: bool,
    /// Use `--transactional-id` also as the static group member id (`group.instance.id`), so a
    /// restarted process (same id) takes its partitions back without a rebalance. For
    /// supervised processes only (a pod): librdkafka treats a fenced static member as fatal —
    /// after a session timeout, e.g. a long broker outage — and the job then exits for its
    /// supervisor to restart it.
    #[arg(long, env = "KAPPA_STATIC_MEMBERSHIP", requires = "transactional_id")]
    pub static_membership: bool,
    /// Snapshot a partition's state after this many input messages.
    #[arg(long, env = "KAPPA_SNAPSHOT_EVERY", default_value_t = 200_000)]
    pub snapshot_every: u64,
    /// …or after this many milliseconds with new input, whichever comes first.
    #[arg(long, env = "KAPPA_SNAPSHOT_INTERVAL_MS", default_value_t = 30_000)]
    pub snapshot_interval_ms: u64,
}

impl Default for LoopArgs {
    fn default() -> Self {
        LoopArgs {
            transactional_id: None,
            no_transactions: false,
            static_membership: false,
            snapshot_every: 200_000,
            snapshot_interval_ms: 30_000,
        }
    }
}

impl LoopArgs {
    /// The transactional id for a job in consumer group `group` (`None`: no transactions).
    pub fn transactional_id(&self, group: &str) -> Option<String> {
        if self.no_transactions {
            return None;
        }
        Some(self.transactional_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "host".into());
            static LOOPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = LOOPS.fetch_add(1, Ordering::Relaxed);
            format!("{group}-{host}-{}-{n}", std::process::id())
        }))
    }
}

/// Settings of one run of the loop.
#[derive(Clone, Debug)]
pub struct Options {
    pub group: String,
    /// Most input messages handled per batch (one poll-process-produce round).
    pub batch_size: usize,
    /// Exit once every assigned partition is caught up and nothing arrived for this long.
    pub idle_exit: Option<Duration>,
    /// Batch mode: stop at the end offsets seen when the partitions were assigned, call
    /// [`Job::end_of_input`], snapshot, commit and exit.
    pub until_end: bool,
    /// Transactions with this `transactional.id` (None: idempotent producer only).
    pub transactional_id: Option<String>,
    /// Static group membership (`group.instance.id`, from `--static-membership` with a given
    /// `--transactional-id`): a restart takes its partitions back at once, without a rebalance.
    pub instance_id: Option<String>,
    /// The changelog topic for snapshots.
    pub changelog: String,
    pub snapshot_every: u64,
    pub snapshot_interval: Duration,
}

impl Options {
    /// Settings for group `group` with the command line's loop settings, snapshots on
    /// `changelog`.
    pub fn new(group: impl Into<String>, changelog: impl Into<String>, args: &LoopArgs) -> Self {
        let group = group.into();
        Options {
            transactional_id: args.transactional_id(&group),
            instance_id: args
                .transactional_id
                .clone()
                .filter(|_| args.static_membership),
            group,
            batch_size: 5_000,
            idle_exit: None,
            until_end: false,
            changelog: changelog.into(),
            snapshot_every: args.snapshot_every.max(1),
            snapshot_interval: Duration::from_millis(args.snapshot_interval_ms),
        }
    }
}

/// Delivery reports: failures, and where our outputs reached in each partition.
#[derive(Default)]
struct Deliveries {
    failed: AtomicBool,
    /// Topic → partition → highest offset delivered (looked up by `&str`: no allocation per
    /// delivery report; Fx hashing: one report per output record).
    reached: Mutex<FxHashMap<String, FxHashMap<i32, i64>>>,
}

struct ProduceContext {
    deliveries: Arc<Deliveries>,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let mut reached = self
                    .deliveries
                    .reached
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let partitions = match reached.get_mut(m.topic()) {
                    Some(partitions) => partitions,
                    None => reached.entry(m.topic().to_string()).or_default(),
                };
                let e = partitions.entry(m.partition()).or_insert(-1);
                *e = (*e).max(m.offset());
            }
            // Purged by an abort: the transaction is redone from the last commit.
            Err((
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight,
                ),
                _,
            )) => {
                self.deliveries.failed.store(true, Ordering::SeqCst);
            }
            Err((e, m)) => {
                error!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "delivery failed: {e}"
                );
                self.deliveries.failed.store(true, Ordering::SeqCst);
            }
        }
    }
}

type Producer_ = BaseProducer<ProduceContext>;

/// Where a partition restarts: its latest snapshot (if any) and the first offset to read.
struct RecoveryPoint {
    partition: i32,
    loaded: Option<Loaded>,
    start: i64,
    /// The input's first retained offset.
    low: i64,
    /// The input's end: 0 when the partition never had a record (so nothing was published
    /// from it).
    high: i64,
}

/// Reads partition `p`'s latest snapshot (not job-specific: decoding is the job's).
fn recovery_point(
    reader: &Reader,
    changelog: &str,
    changelog_partitions: i32,
    group: &str,
    input: &str,
    p: i32,
) -> anyhow::Result<RecoveryPoint> {
    let loaded = snapshot::load_latest(reader, changelog, p % changelog_partitions, group, p)
        .with_context(|| {
            format!("reading the latest snapshot of partition {p} from {changelog}")
        })?;
    let start = loaded.as_ref().map_or(0, |l| l.manifest.input_offset);
    let (low, high) = watermarks(reader, input, p)?;
    Ok(RecoveryPoint {
        partition: p,
        loaded,
        start,
        low,
        high,
    })
}

enum Change {
    Assigned(Vec<anyhow::Result<RecoveryPoint>>),
    Revoked(Vec<i32>),
}

struct RebalanceContext {
    producer: Arc<Producer_>,
    reader: Arc<Reader>,
    input: String,
    changelog: String,
    changelog_partitions: i32,
    group: String,
    transactional: bool,
    changes: Mutex<Vec<Change>>,
}

impl ClientContext for RebalanceContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::kafka::log_client_error(error, reason)
    }
}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Each partition starts at its latest snapshot (recovery finishes in the loop).
                let points: Vec<anyhow::Result<RecoveryPoint>> = partitions
                    .iter()
                    .map(|&p| {
                        recovery_point(
                            &self.reader,
                            &self.changelog,
                            self.changelog_partitions,
                            &self.group,
                            &self.input,
                            p,
                        )
                    })
                    .collect();
                for point in points.iter().flatten() {
                    if let Err(e) = tpl.set_partition_offset(
                        &self.input,
                        point.partition,
                        Offset::Offset(point.start),
                    ) {
                        error!("setting the start offset: {e}");
                    }
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    error!("assign failed: {e}");
                }
                info!(?partitions, cooperative, "partitions assigned");
                self.changes
                    .lock()
                    .expect("lock")
                    .push(Change::Assigned(points));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // No transaction is open while the loop polls. Without transactions, everything
                // produced must be on the broker before the next owner reads the output tails.
                if !self.transactional {
                    if let Err(e) = flush(&self.producer, Duration::from_secs(60)) {
                        error!("flush before revoke failed: {e}");
                    }
                }
                info!(
                    ?partitions,
                    lost = consumer.assignment_lost(),
                    "partitions revoked"
                );
                self.changes
                    .lock()
                    .expect("lock")
                    .push(Change::Revoked(partitions));
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    error!("unassign failed: {e}");
                }
            }
            other => {
                error!("rebalance error: {other:?}");
                self.changes
                    .lock()
                    .expect("lock")
                    .push(Change::Revoked(partitions));
                let _ = consumer.unassign();
            }
        }
    }
}

/// The transaction in progress, begun lazily by the first thing that needs it.
struct Txn<'a> {
    producer: &'a Producer_,
    enabled: bool,
    open: bool,
    /// The open transaction failed while producing (librdkafka refuses further records with
    /// `_STATE` once a transaction needs an abort, e.g. after a fenced epoch or out-of-order
    /// sequence): the rest of the batch sends nothing and [`Ctx::commit`] aborts and rebuilds.
    failed: bool,
    /// The provenance header's value is formatted here (librdkafka copies it): no allocation
    /// of ours per record.
    header: Vec<u8>,
}

impl<'a> Txn<'a> {
    fn new(producer: &'a Producer_, enabled: bool) -> Self {
        Txn {
            producer,
            enabled,
            open: false,
            failed: false,
            header: Vec::with_capacity(64),
        }
    }

    /// Sends `record` in the current transaction (if any).
    fn send(&mut self, record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
        if self.failed {
            return Ok(());
        }
        match send_record(self.producer, record) {
            Err(e)
                if self.open
                    && matches!(
                        e.downcast_ref::<KafkaError>(),
                        Some(KafkaError::MessageProduction(RDKafkaErrorCode::State))
                    ) =>
            {
                warn!("{e:#}: the transaction failed; aborting it and rebuilding from the last commit");
                self.failed = true;
                Ok(())
            }
            other => other,
        }
    }

    fn ensure(&mut self) -> anyhow::Result<()> {
        if self.enabled && !self.open {
            self.producer
                .begin_transaction()
                .context("beginning a transaction")?;
            self.open = true;
        }
        Ok(())
    }
}

/// Outputs to Kafka: every record inside the current transaction (when there are transactions).
struct KafkaSink<'a, 'b> {
    txn: &'b mut Txn<'a>,
}

fn send_record(producer: &Producer_, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(5));
                record = r;
            }
            Err((e, r)) => {
                return Err(e).with_context(|| {
                    format!(
                        "producing to {}/{} ({} bytes)",
                        r.topic,
                        r.partition.unwrap_or(-1),
                        r.payload.map_or(0, <[u8]>::len)
                    )
                })
            }
        }
    }
}

impl Sink for KafkaSink<'_, '_> {
    fn send(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: &[u8],
        timestamp_ms: i64,
        origin: Origin,
        job: &str,
    ) -> anyhow::Result<()> {
        self.txn.ensure()?;
        let mut record = BaseRecord::to(topic)
            .partition(partition)
            .payload(payload)
            .headers(Provenance::headers(&origin, job, &mut self.txn.header))
            .timestamp(timestamp_ms);
        if !key.is_empty() {
            record = record.key(key);
        }
        self.txn.send(record)
    }
}

/// One assigned input partition.
struct Slot<S> {
    seq: SeqState,
    state: S,
    /// Next input offset to process.
    next_offset: i64,
    /// Offset committed for the group (never moves backwards).
    committed: i64,
    /// `until_end`: the end offset seen at assignment.
    end_offset: i64,
    /// Caught up: the consumer reported the end of the partition (transaction markers make the
    /// end offset unreachable by data offsets), or a message at or past `end_offset` arrived.
    at_end: bool,
    /// Inputs processed since the last snapshot, and when it was taken.
    since_snapshot: u64,
    snapshot_at: Instant,
    /// The last snapshot's id and positions (carried into the next one).
    last_snapshot: Option<Manifest>,
    /// [`Job::recovered`] is due once the replay is over.
    recovering: bool,
}

/// Everything the loop shares between partitions.
struct Ctx<'a, J: Job> {
    job: &'a mut J,
    opts: &'a Options,
    counters: &'a Counters,
    consumer: &'a BaseConsumer<RebalanceContext>,
    reader: &'a Reader,
    /// Asks the group's committed offsets without being a member (a member's own request can
    /// wait behind a rebalance that waits for this thread to poll).
    offsets: &'a Reader,
    producer: &'a Producer_,
    deliveries: &'a Deliveries,
    input: String,
    outputs: OutputTopics,
    changelog_partitions: i32,
    fingerprint_of: String,
    fingerprint: u64,
    buf: Vec<u8>,
    slots: HashMap<i32, Slot<J::State>>,
    /// Per input partition, the highest offset this process has processed (kept across
    /// reassignments, so the counters count each input once).
    counted: HashMap<i32, i64>,
    /// When recovery progress was last logged (every few seconds while partitions replay).
    progress_logged: Instant,
}

impl<J: Job> Ctx<'_, J> {
    fn emitter<'e>(
        slot: &'e mut Slot<J::State>,
        sink: &'e mut dyn Sink,
        outputs: &'e OutputTopics,
        counters: &'e Counters,
        buf: &'e mut Vec<u8>,
        job: &J,
    ) -> (Emitter<'e>, &'e mut J::State) {
        (
            Emitter {
                sink,
                topics: outputs,
                seq: &mut slot.seq,
                counters,
                buf,
                rejects: job.rejects(),
                job: job.name(),
            },
            &mut slot.state,
        )
    }

    /// Finishes recovery of the partitions of `points`: decodes their state, checks that it can
    /// carry on, and learns what was already published.
    fn recover(&mut self, points: Vec<RecoveryPoint>) -> anyhow::Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut slots = Vec::with_capacity(points.len());
        let mut never_had_input = Vec::new();
        for point in points {
            let p = point.partition;
            if point.low > point.start {
                bail!(
                    "refusing to start: {input}/{p} now begins at offset {low}, but the state of \
                     this partition {what} offset {start}: {gone} input messages it needs are gone \
                     (retention or delete-records), so replaying would silently build different \
                     state. Rebuild from what remains into side topics with a fresh group \
                     (--group NEW --output-prefix NEW.) and switch consumers over, or restore the \
                     input",
                    input = self.input,
                    low = point.low,
                    start = point.start,
                    gone = point.low - point.start,
                    what = if point.loaded.is_some() {
                        "was snapshotted at"
                    } else {
                        "has no snapshot: it must be rebuilt from"
                    },
                );
            }
            let mut seq = SeqState::new(p, &self.outputs);
            let (state, manifest) = match point.loaded {
                None => (self.job.new_state(p), None),
                Some(l) => {
                    let m = l.manifest;
                    if m.fingerprint != self.fingerprint || m.outputs != self.outputs.names {
                        bail!(
                            "refusing to start: the snapshot of {input}/{p} (offset {at}) was \
                             taken under a different configuration, and its state cannot carry \
                             over.\n  snapshot: outputs {:?}, {}\n  now:      outputs {:?}, {}\n\
                             Rebuild into side topics with a fresh group (--group NEW \
                             --output-prefix NEW.) and switch consumers over once it has caught \
                             up, or run with the configuration of the snapshot",
                            m.outputs,
                            m.fingerprint_of,
                            self.outputs.names,
                            self.fingerprint_of,
                            input = self.input,
                            at = m.input_offset,
                        );
                    }
                    let state = self
                        .job
                        .load(p, &l.state)
                        .with_context(|| format!("restoring the snapshot of partition {p}"))?;
                    seq.next_seq = m.next_seq.clone();
                    // Everything numbered below the snapshot's counters was published before it.
                    for (i, per) in seq.published.iter_mut().enumerate() {
                        per.iter_mut().for_each(|x| *x = m.next_seq[i] - 1);
                    }
                    seq.last_ts = m.last_ts;
                    (state, Some(m))
                }
            };
            seq.last_offset = point.start - 1;
            if point.high == 0 {
                never_had_input.push(p);
            }
            slots.push((
                p,
                Slot {
                    seq,
                    state,
                    next_offset: point.start,
                    committed: point.start,
                    end_offset: i64::MAX,
                    at_end: false,
                    since_snapshot: 0,
                    snapshot_at: Instant::now(),
                    last_snapshot: manifest,
                    recovering: true,
                },
            ));
        }
        let partitions: Vec<i32> = slots.iter().map(|(p, _)| *p).collect();
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovery: snapshots restored"
        );
        // Under transactions: the committed offsets (read_committed waits for a predecessor's
        // pending transaction to end).
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&self.input, *p);
        }
        let committed = self
            .offsets
            .committed_offsets(tpl, Duration::from_secs(120))
            .context("fetching the committed offsets")?;
        let mut counters_known = Vec::new();
        for e in committed.elements() {
            if let (Offset::Offset(c), Some((_, slot))) = (
                e.offset(),
                slots.iter_mut().find(|(p, _)| *p == e.partition()),
            ) {
                if self.opts.transactional_id.is_some() {
                    slot.seq.published_below = c;
                    // The sequence counters committed with the offset (same transaction as the
                    // outputs): every output numbered below them is published, none above.
                    if let Some(next) = parse_seq_metadata(e.metadata(), slot.seq.next_seq.len()) {
                        for (i, per) in slot.seq.published.iter_mut().enumerate() {
                            per.iter_mut().for_each(|x| *x = (*x).max(next[i] - 1));
                        }
                        counters_known.push(e.partition());
                    }
                }
                slot.committed = slot.committed.max(c);
            }
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovery: committed offsets fetched"
        );
        // The last outputs already published, from the output tails: for each input partition,
        // no further back than its snapshot's positions (the start of the log without a
        // snapshot); not at all for a partition that never had input, nor for one whose
        // counters came with its committed offset (transactions on a real broker: the scan
        // then only serves the mock broker and --no-transactions).
        for (i, name) in self.outputs.names.iter().enumerate() {
            let floors: Vec<(i32, Vec<i64>)> = slots
                .iter()
                .filter(|(p, _)| !never_had_input.contains(p) && !counters_known.contains(p))
                .map(|(p, s)| {
                    let floors = (0..self.outputs.partitions[i] as usize)
                        .map(|q| {
                            s.last_snapshot
                                .as_ref()
                                .and_then(|m| m.positions.get(i)?.get(q).copied())
                                .unwrap_or(-1)
                        })
                        .collect();
                    (*p, floors)
                })
                .collect();
            let marks = last_published(self.reader, name, self.job.name(), &floors)?;
            tracing::debug!(
                topic = %name,
                sources = floors.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "recovery: output tail scanned"
            );
            for ((source, q), last) in marks {
                if let Some((_, slot)) = slots.iter_mut().find(|(p, _)| *p == source) {
                    let mark = &mut slot.seq.published[i][q as usize];
                    *mark = (*mark).max(last.seq);
                    slot.seq.replay_until = slot.seq.replay_until.max(last.offset);
                }
            }
        }
        for (p, mut slot) in slots {
            if self.opts.until_end {
                slot.end_offset = watermarks(self.consumer, &self.input, p)?.1;
            }
            let target = slot.seq.replay_target();
            info!(
                partition = p,
                snapshot_offset = slot.next_offset,
                replay_to = target,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "recovering: replaying from the snapshot up to what was already published"
            );
            self.counters
                .ops
                .set_recovering(p, (target - slot.next_offset).max(0));
            self.slots.insert(p, slot);
        }
        Ok(())
    }

    /// Drops the state of every assigned partition and recovers it again from its snapshot (after
    /// an aborted transaction), rewinding the consumer.
    fn rebuild(&mut self) -> anyhow::Result<()> {
        let partitions: Vec<i32> = self.slots.keys().copied().collect();
        self.job.revoked(&partitions);
        self.slots.clear();
        let mut points = Vec::with_capacity(partitions.len());
        for p in partitions {
            let point = recovery_point(
                self.reader,
                &self.opts.changelog,
                self.changelog_partitions,
                &self.opts.group,
                &self.input,
                p,
            )?;
            self.consumer
                .seek(
                    &self.input,
                    p,
                    Offset::Offset(point.start),
                    Duration::from_secs(30),
                )
                .with_context(|| format!("rewinding {}/{p}", self.input))?;
            points.push(point);
        }
        self.recover(points)
    }

    /// Processes one input message.
    fn process(&mut self, m: &BorrowedMessage<'_>, txn: &mut Txn<'_>) -> anyhow::Result<bool> {
        let p = m.partition();
        let Some(slot) = self.slots.get_mut(&p) else {
            return Ok(false);
        };
        // Stale (before a rewind) or past the end in batch mode.
        if m.offset() < slot.next_offset {
            return Ok(false);
        }
        if m.offset() >= slot.end_offset {
            slot.at_end = true;
            return Ok(false);
        }
        slot.seq.last_offset = m.offset();
        // Counted once: input whose outputs are already out (a recovery's replay), or that this
        // process already processed before a reassignment, is "replayed".
        let high = self.counted.entry(p).or_insert(-1);
        slot.seq.fresh = m.offset() > *high && !slot.seq.replaying();
        *high = (*high).max(m.offset());
        if slot.seq.fresh {
            Counters::add(&self.counters.consumed, 1);
        } else {
            Counters::add(&self.counters.replayed, 1);
        }
        slot.seq.last_ts = m.timestamp().to_millis().unwrap_or(slot.seq.last_ts);
        slot.next_offset = m.offset() + 1;
        slot.since_snapshot += 1;
        let record = Record {
            topic: m.topic(),
            partition: p,
            offset: m.offset(),
            timestamp_ms: slot.seq.last_ts,
            key: m.key().unwrap_or(&[]),
            payload: m.payload().unwrap_or(&[]),
        };
        let mut sink = KafkaSink { txn };
        let (mut out, state) = Self::emitter(
            slot,
            &mut sink,
            &self.outputs,
            self.counters,
            &mut self.buf,
            self.job,
        );
        self.job.handle(state, &record, &mut out)?;
        Ok(true)
    }

    /// Calls [`Job::after_batch`] for `touched`, and [`Job::recovered`] for partitions whose
    /// replay is over.
    fn after_batch(&mut self, touched: &[i32], txn: &mut Txn<'_>) -> anyhow::Result<()> {
        let mut ps: Vec<i32> = self.slots.keys().copied().collect();
        ps.sort_unstable();
        for p in ps {
            let slot = self.slots.get_mut(&p).expect("present");
            let touched = touched.contains(&p);
            // Caught up with what was published: the next input is past it.
            let recovered = slot.recovering && slot.next_offset >= slot.seq.replay_target();
            if !touched && !recovered {
                continue;
            }
            let mut sink = KafkaSink { txn: &mut *txn };
            let (mut out, state) = Self::emitter(
                slot,
                &mut sink,
                &self.outputs,
                self.counters,
                &mut self.buf,
                self.job,
            );
            if touched {
                self.job.after_batch(state, &mut out)?;
            }
            if recovered {
                self.job.recovered(state, &mut out)?;
                slot.recovering = false;
                self.counters.ops.set_recovering(p, 0);
                info!(partition = p, offset = slot.next_offset, "recovered: live");
            } else if slot.recovering {
                let target = slot.seq.replay_target();
                self.counters
                    .ops
                    .set_recovering(p, (target - slot.next_offset).max(0));
                if self.progress_logged.elapsed() >= Duration::from_secs(5) {
                    self.progress_logged = Instant::now();
                    info!(
                        partition = p,
                        offset = slot.next_offset,
                        target,
                        "recovering: replaying"
                    );
                }
            }
        }
        Ok(())
    }

    /// Batch mode: every partition reached its end offset.
    fn end_of_input(&mut self, txn: &mut Txn<'_>) -> anyhow::Result<()> {
        let mut ps: Vec<i32> = self.slots.keys().copied().collect();
        ps.sort_unstable();
        for p in ps {
            let slot = self.slots.get_mut(&p).expect("present");
            let mut sink = KafkaSink { txn: &mut *txn };
            let (mut out, state) = Self::emitter(
                slot,
                &mut sink,
                &self.outputs,
                self.counters,
                &mut self.buf,
                self.job,
            );
            self.job.end_of_input(state, &mut out)?;
            slot.since_snapshot = slot.since_snapshot.max(1);
        }
        Ok(())
    }

    /// Snapshots the partitions that are due (or all with new input, when `force`).
    fn snapshots(&mut self, force: bool, txn: &mut Txn<'_>) -> anyhow::Result<()> {
        let due: Vec<i32> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                !s.recovering
                    && s.since_snapshot > 0
                    && (force
                        || s.since_snapshot >= self.opts.snapshot_every
                        || s.snapshot_at.elapsed() >= self.opts.snapshot_interval)
            })
            .map(|(p, _)| *p)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        if !txn.enabled {
            // Everything the snapshot counts as published must be on the broker first.
            flush(self.producer, Duration::from_secs(60)).context("flushing before a snapshot")?;
            if self.deliveries.failed.load(Ordering::SeqCst) {
                bail!("a produce request failed; exiting so a restart can recover");
            }
        }
        let reached = self
            .deliveries
            .reached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for p in due {
            let slot = self.slots.get_mut(&p).expect("present");
            let started = Instant::now();
            let bytes = self.job.save(p, &slot.state)?;
            let positions: Vec<Vec<i64>> = self
                .outputs
                .names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    (0..self.outputs.partitions[i])
                        .map(|q| {
                            let previous = slot
                                .last_snapshot
                                .as_ref()
                                .and_then(|m| m.positions.get(i)?.get(q as usize).copied())
                                .unwrap_or(-1);
                            reached
                                .get(name)
                                .and_then(|r| r.get(&q))
                                .map_or(previous, |o| previous.max(o + 1))
                        })
                        .collect()
                })
                .collect();
            let manifest = Manifest {
                format: snapshot::FORMAT,
                job: self.job.name().to_string(),
                group: self.opts.group.clone(),
                partition: p,
                id: snapshot::fnv1a(
                    format!(
                        "{p}/{}/{}",
                        slot.next_offset,
                        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
                    )
                    .as_bytes(),
                ),
                input_offset: slot.next_offset,
                last_ts: slot.seq.last_ts,
                fingerprint: self.fingerprint,
                fingerprint_of: self.fingerprint_of.clone(),
                outputs: self.outputs.names.clone(),
                next_seq: slot.seq.next_seq.clone(),
                positions,
                chunks: 0,
                bytes: 0,
                checksum: 0,
                created_ms: chrono::Utc::now().timestamp_millis(),
            };
            let prepared = Prepared::new(manifest, &bytes);
            txn.ensure()?;
            let q = p % self.changelog_partitions;
            for (key, payload) in prepared.records()? {
                txn.send(
                    BaseRecord::to(&self.opts.changelog)
                        .partition(q)
                        .key(key.as_bytes())
                        .payload(&payload[..]),
                )?;
            }
            // The chunks of the snapshot this one replaces are no longer needed: compaction
            // drops them once their tombstones are written.
            if let Some(old) = &slot.last_snapshot {
                for i in 0..old.chunks {
                    let key = snapshot::chunk_key(&old.group, p, old.id, i);
                    txn.send(
                        BaseRecord::<[u8], [u8]>::to(&self.opts.changelog)
                            .partition(q)
                            .key(key.as_bytes()),
                    )?;
                }
            }
            Counters::add(&self.counters.snapshots, 1);
            Counters::add(&self.counters.snapshot_bytes, prepared.manifest.bytes);
            Counters::add(&self.counters.snapshot_state_bytes, bytes.len() as u64);
            Counters::add(
                &self.counters.snapshot_micros,
                started.elapsed().as_micros() as u64,
            );
            tracing::debug!(
                partition = p,
                offset = prepared.manifest.input_offset,
                state_bytes = bytes.len(),
                compressed = prepared.manifest.bytes,
                chunks = prepared.manifest.chunks,
                ms = started.elapsed().as_millis() as u64,
                "snapshot"
            );
            slot.since_snapshot = 0;
            slot.snapshot_at = Instant::now();
            slot.last_snapshot = Some(prepared.manifest);
        }
        Ok(())
    }

    /// Commits what the batch did: outputs, snapshots and input offsets together (one
    /// transaction), or stores the offsets for the background commit (no transactions).
    fn commit(&mut self, txn: &mut Txn<'_>) -> anyhow::Result<()> {
        let offsets = self.offsets_to_commit()?;
        let producer = self.producer;
        if !txn.enabled {
            if let Some(offsets) = offsets {
                if let Err(err) = self.consumer.store_offsets(&offsets) {
                    warn!("storing offsets: {err}");
                }
                self.mark_committed();
            }
            return Ok(());
        }
        if offsets.is_some() {
            txn.ensure()?;
        }
        if !txn.open {
            return Ok(());
        }
        txn.open = false;
        // A transaction that failed while producing goes straight to the abort.
        let started = Instant::now();
        let mut ok = !std::mem::take(&mut txn.failed);
        if let (true, Some(offsets), Some(meta)) = (ok, &offsets, self.consumer.group_metadata()) {
            ok = with_retries(
                "sending offsets to the transaction",
                Duration::from_secs(30),
                || producer.send_offsets_to_transaction(offsets, &meta, Duration::from_secs(30)),
            )?;
        }
        let offsets_sent = started.elapsed();
        if ok {
            // Deliver the batch first (fast, see `kafka::flush`): commit_transaction's own flush
            // then finds nothing in flight. A failure here surfaces in the commit below.
            let _ = flush(producer, Duration::from_secs(60));
        }
        let flushed = started.elapsed();
        if ok {
            ok = with_retries(
                "committing the transaction",
                Duration::from_secs(60),
                || producer.commit_transaction(Duration::from_secs(30)),
            )?;
        }
        if ok {
            tracing::debug!(
                offsets_ms = offsets_sent.as_secs_f64() * 1e3,
                flushed_ms = flushed.as_secs_f64() * 1e3,
                total_ms = started.elapsed().as_secs_f64() * 1e3,
                "transaction committed"
            );
            Counters::add(&self.counters.commits, 1);
            self.mark_committed();
            return Ok(());
        }
        // The abort purges what is still queued and waits for those messages' delivery reports,
        // which this thread serves: poll between short attempts.
        let aborted = with_retries("aborting the transaction", Duration::from_secs(120), || {
            producer.poll(Duration::from_millis(50));
            producer.abort_transaction(Duration::from_secs(1))
        })?;
        if !aborted {
            bail!("could not abort a failed transaction; exiting so a restart can recover");
        }
        Counters::add(&self.counters.aborts, 1);
        self.deliveries.failed.store(false, Ordering::SeqCst);
        self.rebuild()
    }

    /// The input offsets to commit: partitions past what is committed.
    fn offsets_to_commit(&self) -> anyhow::Result<Option<TopicPartitionList>> {
        let mut tpl = TopicPartitionList::new();
        for (p, s) in &self.slots {
            if s.next_offset > s.committed {
                tpl.add_partition_offset(&self.input, *p, Offset::Offset(s.next_offset))?;
                if let Some(mut e) = tpl.find_partition(&self.input, *p) {
                    e.set_metadata(seq_metadata(&s.seq.next_seq));
                }
            }
        }
        Ok((tpl.count() > 0).then_some(tpl))
    }

    fn mark_committed(&mut self) {
        for s in self.slots.values_mut() {
            s.committed = s.committed.max(s.next_offset);
        }
    }
}

/// The metadata committed with an input partition's offset: the partition's output sequence
/// counters (next number per output topic) at that offset, `kx1:n1,n2,…`.
fn seq_metadata(next_seq: &[u64]) -> String {
    let numbers: Vec<String> = next_seq.iter().map(u64::to_string).collect();
    format!("kx1:{}", numbers.join(","))
}

/// The counters of [`seq_metadata`], if `text` holds exactly `outputs` of them (anything else —
/// no metadata, another format, another output list — is ignored and the output tails decide).
fn parse_seq_metadata(text: &str, outputs: usize) -> Option<Vec<u64>> {
    let numbers: Vec<u64> = text
        .strip_prefix("kx1:")?
        .split(',')
        .map(|n| n.parse::<u64>().ok().filter(|&n| n >= 1))
        .collect::<Option<_>>()?;
    (numbers.len() == outputs).then_some(numbers)
}

/// A consumer error after which the consumer cannot go on (e.g. a fenced static member).
fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumptionFatal(_))
        || matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::FencedInstanceId)
        )
}

/// Classifies a transactional error: `Ok(true)` retry, `Ok(false)` abort and rebuild, `Err` fatal.
fn txn_error(e: KafkaError, what: &str) -> anyhow::Result<bool> {
    match &e {
        KafkaError::Transaction(t) if t.is_retriable() => Ok(true),
        KafkaError::Transaction(t) if t.txn_requires_abort() => {
            warn!("{what}: {t}: aborting the transaction and rebuilding from the last commit");
            Ok(false)
        }
        KafkaError::Transaction(t) if t.is_fatal() => Err(anyhow!(
            "{what}: {t} — another process probably took over this transactional id (fenced); \
             stopping"
        )),
        _ => Err(anyhow!(e).context(what.to_string())),
    }
}

/// Runs a transactional call, retrying while the error is retriable (up to `limit`). Returns
/// `Ok(false)` when the transaction must be aborted.
fn with_retries(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<(), KafkaError>,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(()) => return Ok(true),
            Err(e) => {
                if !txn_error(e, what)? {
                    return Ok(false);
                }
                if Instant::now() > deadline {
                    warn!("{what}: still failing after {limit:?}");
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Runs `job` until `shutdown`, idle exit or (batch mode) the end of the input.
pub fn run<J: Job>(
    job: &mut J,
    kafka: &KafkaArgs,
    opts: &Options,
    shutdown: &Shutdown,
    counters: &Counters,
) -> anyhow::Result<()> {
    let input = job.input();
    counters.expect_rejects(&job.reject_reasons());
    let transactional = opts.transactional_id.is_some();
    let deliveries = Arc::new(Deliveries::default());
    let mut pcfg = kafka.producer();
    match &opts.transactional_id {
        Some(id) => {
            pcfg.set("transactional.id", kafka.transactional_id(id))
                .set("transaction.timeout.ms", "30000")
                .set("message.timeout.ms", "30000");
        }
        // A failed batch must not leave a gap that later messages of the partition hide.
        None => {
            pcfg.set("enable.gapless.guarantee", "true");
        }
    }
    let producer: Arc<Producer_> = Arc::new(
        pcfg.create_with_context(ProduceContext {
            deliveries: deliveries.clone(),
        })
        .context("creating producer")?,
    );
    if transactional {
        producer
            .init_transactions(Duration::from_secs(60))
            .context("initializing transactions (this fences an older process with the same transactional id)")?;
    }
    let reader: Arc<Reader> = Arc::new(create_reader(&kafka.reader())?);
    let offsets: Reader =
        create_reader(kafka.reader().set("group.id", kafka.group_id(&opts.group)))
            .context("creating the offsets client")?;
    let names = job.outputs();
    let partitions = names
        .iter()
        .map(|n| partition_count(&reader, n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut state = HashMap::new();
    for t in job.state_outputs() {
        let n = partition_count(&reader, &t)?;
        state.insert(t, n);
    }
    partition_count(&reader, &input)?;
    let changelog_partitions = partition_count(&reader, &opts.changelog).with_context(|| {
        format!(
            "the changelog topic {} holds this job's snapshots (create the topics: kappa topics create)",
            opts.changelog
        )
    })?;
    let mut ccfg = kafka.consumer(&opts.group);
    ccfg.set("partition.assignment.strategy", "cooperative-sticky")
        // Offsets are always explicit (the snapshot's); never jump silently.
        .set("auto.offset.reset", "error")
        // Caught up is "the consumer reached the end", not "the next offset is the high
        // watermark": transaction markers take offsets no message has.
        .set("enable.partition.eof", "true");
    if transactional {
        // Offsets are committed inside each transaction, never on their own.
        ccfg.set("enable.auto.commit", "false");
    }
    if let Some(id) = &opts.instance_id {
        ccfg.set("group.instance.id", kafka.transactional_id(id));
    }
    let consumer: BaseConsumer<RebalanceContext> = ccfg
        .create_with_context(RebalanceContext {
            producer: producer.clone(),
            reader: reader.clone(),
            input: input.clone(),
            changelog: opts.changelog.clone(),
            changelog_partitions,
            group: opts.group.clone(),
            transactional,
            changes: Mutex::default(),
        })
        .context("creating consumer")?;
    // Where records go is part of what a partition's state means.
    let fingerprint_of = format!(
        "{}; partitioning {}",
        job.fingerprint(),
        crate::topics::Partitioner::SCHEME
    );
    let partitioner = crate::topics::Partitioner::new(job.instruments());
    let mut ctx = Ctx {
        fingerprint: snapshot::fingerprint(job.name(), &fingerprint_of),
        fingerprint_of,
        job,
        opts,
        counters,
        consumer: &consumer,
        reader: &reader,
        offsets: &offsets,
        producer: &producer,
        deliveries: &deliveries,
        input: input.clone(),
        outputs: OutputTopics {
            partitioner,
            names,
            partitions,
            state,
        },
        changelog_partitions,
        buf: Vec::with_capacity(512),
        slots: HashMap::new(),
        counted: HashMap::new(),
        progress_logged: Instant::now(),
    };
    consumer.subscribe(&[&input]).context("subscribing")?;
    info!(brokers = %kafka.brokers, group = %opts.group, job = ctx.job.name(), transactional, changelog = %opts.changelog, "started");

    let mut last_input = Instant::now();
    let mut ever_assigned = false;
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(opts.batch_size);
    let mut touched: Vec<i32> = Vec::new();
    while !shutdown.is_triggered() {
        if !transactional && deliveries.failed.load(Ordering::SeqCst) {
            bail!("a produce request failed; exiting so a restart can recover");
        }
        counters.ops.polled();
        // Poll a batch (no transaction is open: rebalances find everything committed).
        batch.clear();
        while batch.len() < opts.batch_size {
            let timeout = if batch.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            let msg = consumer.poll(timeout);
            let changes = std::mem::take(&mut *consumer.context().changes.lock().expect("lock"));
            for change in changes {
                match change {
                    Change::Revoked(ps) => {
                        ctx.job.revoked(&ps);
                        for p in &ps {
                            ctx.slots.remove(p);
                        }
                        counters.ops.forget(&ps);
                        batch.retain(|m| !ps.contains(&m.partition()));
                    }
                    Change::Assigned(points) => {
                        ever_assigned = true;
                        let points = points.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
                        ctx.recover(points)?;
                    }
                }
                counters
                    .assigned
                    .store(ctx.slots.len() as u64, Ordering::Relaxed);
            }
            match msg {
                None => break,
                // Messages and end-of-partition events come in offset order: the last one seen
                // tells whether the batch reaches the end.
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(slot) = ctx.slots.get_mut(&p) {
                        slot.at_end = true;
                    }
                }
                Some(Err(
                    e @ KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange),
                )) => {
                    return Err(e).context(
                        "an input offset the state needs is out of range (the input was truncated under a running job)",
                    );
                }
                Some(Err(e)) if is_fatal(&e) => {
                    return Err(e)
                        .context("the consumer failed fatally; exiting so a restart can recover");
                }
                Some(Err(e)) => {
                    warn!("consumer: {e}");
                    break;
                }
                Some(Ok(m)) => {
                    if let Some(slot) = ctx.slots.get_mut(&m.partition()) {
                        slot.at_end = m.offset() + 1 >= slot.end_offset;
                    }
                    batch.push(m)
                }
            }
        }

        // Process it.
        let batch_started = (!batch.is_empty()).then(Instant::now);
        let mut txn = Txn::new(&producer, transactional);
        touched.clear();
        for m in &batch {
            if ctx.process(m, &mut txn)? && !touched.contains(&m.partition()) {
                touched.push(m.partition());
            }
        }
        ctx.after_batch(&touched, &mut txn)?;
        let input_done = opts.until_end
            && ever_assigned
            && !ctx.slots.is_empty()
            && ctx
                .slots
                .values()
                .all(|s| (s.at_end || s.next_offset >= s.end_offset) && !s.recovering);
        if input_done {
            ctx.end_of_input(&mut txn)?;
        }
        ctx.snapshots(input_done, &mut txn)?;

        let committing = Instant::now();
        ctx.commit(&mut txn)?;
        if batch_started.is_some() {
            counters
                .ops
                .commit_seconds
                .observe(committing.elapsed().as_secs_f64());
        }
        producer.poll(Duration::ZERO);
        if let Some(t) = batch_started {
            counters
                .ops
                .batch_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        counters
            .ops
            .set_ready(ever_assigned && ctx.slots.values().all(|s| !s.recovering));
        if counters.ops.lag_due() {
            // Behind the high watermark from where the group stands (the committed offset while a
            // partition replays below it).
            let lag = ctx
                .slots
                .iter()
                .filter_map(|(p, s)| {
                    let (_, high) = consumer
                        .fetch_watermarks(&input, *p, Duration::from_millis(500))
                        .ok()?;
                    Some((*p, (high - s.next_offset.max(s.committed)).max(0)))
                })
                .collect();
            counters.ops.set_lag(&input, lag);
        }
        if input_done {
            let ends: Vec<(i32, i64, i64)> = ctx
                .slots
                .iter()
                .map(|(p, s)| (*p, s.next_offset, s.end_offset))
                .collect();
            info!(?ends, "reached the end offsets seen at start; exiting");
            break;
        }
        if !batch.is_empty() {
            last_input = Instant::now();
        } else if let Some(idle) = opts.idle_exit {
            let caught_up = !ctx.slots.is_empty()
                && ctx.slots.values().all(|s| {
                    let high = consumer
                        .fetch_watermarks(&input, s.seq.partition, Duration::from_secs(5))
                        .map(|(_, h)| h)
                        .unwrap_or(i64::MAX);
                    (s.at_end || s.next_offset >= high) && !s.recovering
                });
            if caught_up && last_input.elapsed() >= idle {
                info!("caught up and idle; exiting");
                break;
            }
        }
    }
    drop(batch);
    // A clean stop leaves a snapshot of every partition at its last input: a restart replays
    // nothing.
    let mut txn = Txn::new(&producer, transactional);
    ctx.snapshots(true, &mut txn)?;
    ctx.commit(&mut txn)?;
    flush(&producer, Duration::from_secs(60)).context("final flush")?;
    if !transactional {
        if deliveries.failed.load(Ordering::SeqCst) {
            bail!("a produce request failed; exiting so a restart can recover");
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => warn!("final commit: {e}"),
        }
    }
    info!(
        job = ctx.job.name(),
        consumed = Counters::get(&counters.consumed),
        replayed = Counters::get(&counters.replayed),
        items = Counters::get(&counters.items),
        rejected = Counters::get(&counters.rejected),
        produced = Counters::get(&counters.produced),
        suppressed = Counters::get(&counters.suppressed),
        snapshots = Counters::get(&counters.snapshots),
        "stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_counters_round_trip_through_offset_metadata() {
        let next = vec![1, 42, 7_000_000_001];
        let text = seq_metadata(&next);
        assert_eq!(text, "kx1:1,42,7000000001");
        assert_eq!(parse_seq_metadata(&text, 3), Some(next));
        // Anything else leaves the decision to the output tails.
        assert_eq!(parse_seq_metadata(&text, 2), None);
        assert_eq!(parse_seq_metadata("", 3), None);
        assert_eq!(parse_seq_metadata("kx1:1,x,3", 3), None);
        assert_eq!(parse_seq_metadata("kx1:0,1,1", 3), None);
        assert_eq!(parse_seq_metadata("kx2:1,1,1", 3), None);
    }
}
