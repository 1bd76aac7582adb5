//! Running jobs outside their own process: on a thread of this one ([`spawn`], for the demo and
//! the benchmarks), or over plain records with no broker at all ([`Harness`], for unit tests of a
//! job's logic and of its snapshots).

use super::job::{Emitter, Job, Origin, OutputTopics, Record, SeqState, Sink};
use super::metrics::Counters;
use super::shutdown::Shutdown;
use anyhow::anyhow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A job running on a thread of this process.
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

/// One output collected by a [`Harness`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub topic: String,
    pub partition: i32,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub timestamp_ms: i64,
    pub origin: Origin,
    pub job: String,
}

impl Sent {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Collects outputs, or (when `keep` is off) only formats their provenance header as the Kafka
/// sink does and counts them.
struct VecSink<'a> {
    sent: &'a mut Vec<Sent>,
    keep: bool,
    discarded: &'a mut u64,
    header: &'a mut Vec<u8>,
}

impl Sink for VecSink<'_> {
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
        if !self.keep {
            super::kafka::encode_provenance(&origin, job, self.header);
            std::hint::black_box((topic, partition, key, payload, timestamp_ms, &self.header));
            *self.discarded += 1;
            return Ok(());
        }
        self.sent.push(Sent {
            topic: topic.to_string(),
            partition,
            key: key.to_vec(),
            payload: payload.to_vec(),
            timestamp_ms,
            origin,
            job: job.to_string(),
        });
        Ok(())
    }
}

/// A job driven record by record, as the runtime drives it for each input partition, with its
/// outputs collected in [`Harness::sent`]. No broker, no suppression: every output is "new".
pub struct Harness<J: Job> {
    pub job: J,
    outputs: OutputTopics,
    slots: BTreeMap<i32, (SeqState, J::State)>,
    /// Everything the job published, in order.
    pub sent: Vec<Sent>,
    pub counters: Counters,
    buf: Vec<u8>,
    /// The job's input topic.
    input: String,
    /// Off after [`Harness::discard_outputs`].
    keep: bool,
    /// Outputs sent while discarding.
    pub discarded: u64,
    header: Vec<u8>,
}

impl<J: Job> Harness<J> {
    /// A harness for `job`; `partitions(topic)` gives each output topic's partition count.
    pub fn new(job: J, partitions: impl Fn(&str) -> i32) -> Self {
        let names = job.outputs();
        let outputs = OutputTopics {
            partitioner: crate::topics::Partitioner::new(job.instruments()),
            partitions: names.iter().map(|n| partitions(n)).collect(),
            state: job
                .state_outputs()
                .into_iter()
                .map(|t| {
                    let n = partitions(&t);
                    (t, n)
                })
                .collect(),
            names,
        };
        let counters = Counters::default();
        counters.expect_rejects(&job.reject_reasons());
        Harness {
            input: job.input(),
            job,
            outputs,
            slots: BTreeMap::new(),
            sent: Vec::new(),
            counters,
            buf: Vec::new(),
            keep: true,
            discarded: 0,
            header: Vec::new(),
        }
    }

    /// From now on outputs are not collected, only counted in [`Harness::discarded`] (their
    /// provenance header still formatted, as the Kafka sink does): for measuring the job's own
    /// cost per record, allocations included.
    pub fn discard_outputs(&mut self) {
        self.keep = false;
        self.sent = Vec::new();
    }

    fn with<T>(
        &mut self,
        partition: i32,
        f: impl FnOnce(&mut J, &mut J::State, &mut Emitter<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if !self.slots.contains_key(&partition) {
            let state = self.job.new_state(partition);
            self.slots
                .insert(partition, (SeqState::new(partition, &self.outputs), state));
        }
        let (seq, state) = self.slots.get_mut(&partition).expect("present");
        let mut sink = VecSink {
            sent: &mut self.sent,
            keep: self.keep,
            discarded: &mut self.discarded,
            header: &mut self.header,
        };
        let mut out = Emitter {
            sink: &mut sink,
            topics: &self.outputs,
            seq,
            counters: &self.counters,
            buf: &mut self.buf,
            rejects: self.job.rejects(),
            job: self.job.name(),
        };
        f(&mut self.job, state, &mut out)
    }

    /// Handles one input record of `partition` at `offset`, stamped `timestamp_ms`.
    pub fn feed(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp_ms: i64,
        key: &[u8],
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let topic = std::mem::take(&mut self.input);
        let result = self.with(partition, |job, state, out| {
            out.seq.last_offset = offset;
            out.seq.last_ts = timestamp_ms;
            let record = Record {
                topic: &topic,
                partition,
                offset,
                timestamp_ms,
                key,
                payload,
            };
            job.handle(state, &record, out)
        });
        self.input = topic;
        result
    }

    /// Ends a batch of `partition` ([`Job::after_batch`]).
    pub fn end_batch(&mut self, partition: i32) -> anyhow::Result<()> {
        self.with(partition, |job, state, out| job.after_batch(state, out))
    }

    /// Ends the input of `partition` ([`Job::end_of_input`]).
    pub fn end_of_input(&mut self, partition: i32) -> anyhow::Result<()> {
        self.with(partition, |job, state, out| job.end_of_input(state, out))
    }

    /// Republishes `partition`'s state feeds ([`Job::recovered`]).
    pub fn recovered(&mut self, partition: i32) -> anyhow::Result<()> {
        self.with(partition, |job, state, out| job.recovered(state, out))
    }

    /// Saves `partition`'s state as a snapshot would.
    pub fn save(&self, partition: i32) -> anyhow::Result<Vec<u8>> {
        let (_, state) = self
            .slots
            .get(&partition)
            .ok_or_else(|| anyhow!("partition {partition} has no state"))?;
        self.job.save(partition, state)
    }

    /// `partition`'s sequence bookkeeping (what a snapshot's manifest carries besides the state).
    pub fn sequence(&self, partition: i32) -> Option<SeqState> {
        self.slots.get(&partition).map(|(seq, _)| seq.clone())
    }

    /// Gives `partition` the state loaded from `bytes`, with the sequence bookkeeping `seq`, as a
    /// recovery from a snapshot does.
    pub fn restore_with(
        &mut self,
        partition: i32,
        bytes: &[u8],
        seq: SeqState,
    ) -> anyhow::Result<()> {
        let state = self.job.load(partition, bytes)?;
        self.slots.insert(partition, (seq, state));
        Ok(())
    }
}
